"""Real-valued RoPE and the memory-attention graph: equal to sam2's complex version, in torch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

from sam2tool.config.registry import get_spec
from sam2tool.export.onnx_rope import MemoryAttentionGraph, rope_tables, rotate, rotate_repeated
from sam2tool.models.build import VIDEO_PREDICTOR_OVERRIDES, compose_model_config, instantiate_model

SIZE = 128
GRID = SIZE // 16


@pytest.mark.parametrize(("dim", "end_x", "end_y"), [(64, 8, 8), (128, 16, 16), (32, 12, 12)])
def test_tables_are_the_complex_angles(dim: int, end_x: int, end_y: int) -> None:
    cis = compute_axial_cis(dim, end_x, end_y)
    cos, sin = rope_tables(dim, end_x, end_y)
    assert cos.shape == cis.shape == (end_x * end_y, dim // 2)
    torch.testing.assert_close(cos, cis.real, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, cis.imag, rtol=0, atol=1e-6)


@pytest.mark.parametrize("frames", [1, 3])
def test_rotation_equals_sam2_complex_rotation(frames: int) -> None:
    torch.manual_seed(0)
    heads, tokens, dim = 2, GRID * GRID, 64
    q = torch.randn(1, heads, tokens, dim)
    k = torch.randn(1, heads, frames * tokens, dim)
    cis = compute_axial_cis(dim, GRID, GRID)
    q_ref, k_ref = apply_rotary_enc(q, k, freqs_cis=cis, repeat_freqs_k=frames > 1)
    cos, sin = rope_tables(dim, GRID, GRID)
    torch.testing.assert_close(rotate(q, cos, sin), q_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(rotate_repeated(k, cos, sin), k_ref, rtol=0, atol=1e-5)
    assert not torch.allclose(rotate(q, cos, sin), q)  # it does rotate


def micro(seed: int = 0) -> torch.nn.Module:
    """Random-weight micro as the video predictor builds it (binarized prompt masks, stability fall-back)."""
    torch.manual_seed(seed)
    overrides = [o for o in VIDEO_PREDICTOR_OVERRIDES if "fill_hole_area" not in o]  # a predictor-only argument
    config = compose_model_config(get_spec("sam2.1", "micro"), SIZE, extra_overrides=overrides)
    return instantiate_model(config).eval()


#: The scenario of the memory-attention tests: frame 0 prompted, frames 1..8 tracked, frame 9 next.
FRAME, NUM_FRAMES = 9, 20


def frame_outputs(model: torch.nn.Module, seed: int = 1) -> dict[str, dict[int, dict[str, object]]]:
    """sam2's ``output_dict`` after tracking frames 0..FRAME-1 (random memories and pointers)."""
    generator = torch.Generator().manual_seed(seed)
    width, hidden = model.mem_dim, model.hidden_dim
    position = torch.randn(1, width, GRID, GRID, generator=generator)

    def out() -> dict[str, object]:
        return {
            "maskmem_features": torch.randn(1, width, GRID, GRID, generator=generator),
            "maskmem_pos_enc": [position],
            "obj_ptr": torch.randn(1, hidden, generator=generator),
        }

    return {"cond_frame_outputs": {0: out()}, "non_cond_frame_outputs": {t: out() for t in range(1, FRAME)}}


def graph_inputs(model: torch.nn.Module, outputs: dict, seed: int = 2) -> dict[str, torch.Tensor]:  # type: ignore[type-arg]
    """The bank sam2 picks for frame FRAME, in the graph's inputs: cond frame 0, then frames 3..8."""
    generator = torch.Generator().manual_seed(seed)
    cond, recent = outputs["cond_frame_outputs"], outputs["non_cond_frame_outputs"]
    num_maskmem = model.num_maskmem
    frames = [cond[0]] + [recent[FRAME - d] for d in range(num_maskmem - 1, 0, -1)]
    index = [num_maskmem - 1] + [d - 1 for d in range(num_maskmem - 1, 0, -1)]
    pointers = [cond[0]["obj_ptr"]] + [recent[FRAME - d]["obj_ptr"] for d in range(1, FRAME)]
    distance = [FRAME, *range(1, FRAME)]
    largest = min(NUM_FRAMES, model.max_obj_ptrs_in_encoder) - 1
    return {
        "features": torch.randn(1, model.hidden_dim, GRID, GRID, generator=generator),
        "features_pos": torch.randn(1, model.hidden_dim, GRID, GRID, generator=generator),
        "memory": torch.cat([f["maskmem_features"] for f in frames]),
        "memory_pos": torch.cat([f["maskmem_pos_enc"][0] for f in frames]),
        "memory_temporal_index": torch.tensor(index, dtype=torch.int64),
        "object_pointers": torch.cat(pointers),
        "object_pointer_positions": torch.tensor(distance, dtype=torch.float32) / largest,
    }


def sam2_conditioned(
    model: torch.nn.Module,
    outputs: dict,  # type: ignore[type-arg]
    inputs: dict[str, torch.Tensor],
    frame: int = FRAME,
) -> torch.Tensor:
    """sam2's own memory selection and encoding for ``frame``."""
    return model._prepare_memory_conditioned_features(
        frame_idx=frame,
        is_init_cond_frame=False,
        current_vision_feats=[inputs["features"].flatten(2).permute(2, 0, 1)],
        current_vision_pos_embeds=[inputs["features_pos"].flatten(2).permute(2, 0, 1)],
        feat_sizes=[(GRID, GRID)],
        output_dict=outputs,
        num_frames=NUM_FRAMES,
    )


@pytest.mark.parametrize("version", ["sam2.1", "sam2"])
def test_memory_attention_graph_equals_sam2(version: str) -> None:
    torch.manual_seed(0)
    model = instantiate_model(compose_model_config(get_spec(version, "micro"), SIZE)).eval()  # type: ignore[arg-type]
    torch.nn.init.normal_(model.maskmem_tpos_enc)
    outputs = frame_outputs(model)
    inputs = graph_inputs(model, outputs)
    with torch.no_grad():
        expected = sam2_conditioned(model, outputs, inputs)
        got = MemoryAttentionGraph(model, SIZE).eval()(**inputs)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_memory_attention_graph_without_pointers_equals_sam2() -> None:
    """An object tracked before its prompted frame: sam2.1 counts only past pointers, so there are none."""
    torch.manual_seed(0)
    model = micro()
    torch.nn.init.normal_(model.maskmem_tpos_enc)
    later = frame_outputs(model)["cond_frame_outputs"][0]
    outputs = {"cond_frame_outputs": {12: later}, "non_cond_frame_outputs": {}}
    inputs = graph_inputs(model, frame_outputs(model))
    inputs.update(
        memory=later["maskmem_features"],
        memory_pos=later["maskmem_pos_enc"][0],
        memory_temporal_index=torch.tensor([model.num_maskmem - 1]),
        object_pointers=torch.zeros(0, model.hidden_dim),
        object_pointer_positions=torch.zeros(0),
    )
    assert model.only_obj_ptrs_in_the_past_for_eval
    with torch.no_grad():
        expected = sam2_conditioned(model, outputs, inputs, frame=0)
        got = MemoryAttentionGraph(model, SIZE).eval()(**inputs)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_memory_attention_runs_in_onnxruntime_with_banks_of_any_length(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    model = micro()
    torch.nn.init.normal_(model.maskmem_tpos_enc)
    graph = MemoryAttentionGraph(model, SIZE).eval()
    outputs = frame_outputs(model)
    example = graph_inputs(model, outputs)
    names = list(example)
    frames, pointers = torch.export.Dim("frames", min=1), torch.export.Dim("pointers", min=0)
    dynamic = {
        name: ({0: frames} if name.startswith("memory") else {0: pointers} if "pointer" in name else None)
        for name in names
    }
    with torch.no_grad():
        program = torch.onnx.export(
            graph, tuple(example.values()), input_names=names, output_names=["conditioned"],
            dynamic_shapes=dynamic, opset_version=18, dynamo=True, verbose=False,
        )  # fmt: skip
    assert program is not None
    program.save(tmp_path / "memory_attention.onnx")
    session = ort.InferenceSession(str(tmp_path / "memory_attention.onnx"), providers=["CPUExecutionProvider"])
    for frames_, pointers_ in [(1, 0), (1, 1), (3, 5), (7, 16)]:
        inputs = graph_inputs(model, outputs, seed=frames_)
        inputs = {
            k: (v[:frames_] if k.startswith("memory") else v[:pointers_] if "pointer" in k else v)
            for k, v in inputs.items()
        }
        (got,) = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        with torch.no_grad():
            expected = graph(**inputs).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
