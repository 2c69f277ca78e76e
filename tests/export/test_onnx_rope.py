"""Real-valued RoPE and the memory-attention graph: equal to sam2's complex version, in torch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

from sam2tool.config.registry import get_spec
from sam2tool.export.onnx_rope import MemoryAttentionGraph, rope_tables, rotate, rotate_repeated
from sam2tool.models.build import compose_model_config, instantiate_model

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
    torch.manual_seed(seed)
    return instantiate_model(compose_model_config(get_spec("sam2.1", "micro"), SIZE)).eval()


def bank(model: torch.nn.Module, frames: int, pointers: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random current features and a memory bank of ``frames`` spatial memories and ``pointers`` tokens."""
    generator = torch.Generator().manual_seed(seed)
    hidden, width = model.hidden_dim, model.mem_dim
    spatial = frames * GRID * GRID
    return {
        "features": torch.randn(1, hidden, GRID, GRID, generator=generator),
        "features_pos": torch.randn(1, hidden, GRID, GRID, generator=generator),
        "memory": torch.randn(spatial, 1, width, generator=generator),
        "memory_pos": torch.randn(spatial, 1, width, generator=generator),
        "object_pointers": torch.randn(pointers, 1, width, generator=generator),
        "object_pointers_pos": torch.randn(pointers, 1, width, generator=generator),
    }


def sam2_memory_attention(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """What SAM2Base._prepare_memory_conditioned_features computes with sam2's complex RoPE."""
    features = inputs["features"]
    out = model.memory_attention(
        curr=[features.flatten(2).permute(2, 0, 1)],
        curr_pos=[inputs["features_pos"].flatten(2).permute(2, 0, 1)],
        memory=torch.cat([inputs["memory"], inputs["object_pointers"]]),
        memory_pos=torch.cat([inputs["memory_pos"], inputs["object_pointers_pos"]]),
        num_obj_ptr_tokens=inputs["object_pointers"].shape[0],
    )
    return out.permute(1, 2, 0).reshape(features.shape)


@pytest.mark.parametrize(("frames", "pointers"), [(1, 2), (7, 32)])
def test_memory_attention_graph_equals_sam2(frames: int, pointers: int) -> None:
    model = micro()
    inputs = bank(model, frames, pointers)
    with torch.no_grad():
        expected = sam2_memory_attention(model, inputs)
        got = MemoryAttentionGraph(model, SIZE).eval()(**inputs)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_memory_attention_runs_in_onnxruntime_with_banks_of_any_length(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    model = micro()
    graph = MemoryAttentionGraph(model, SIZE).eval()
    names = list(bank(model, 1, 1))
    frames, pointers = torch.export.Dim("frames", min=1, max=64), torch.export.Dim("pointers", min=1, max=1024)
    dynamic = {name: None for name in names}
    dynamic["memory"] = dynamic["memory_pos"] = {0: frames * (GRID * GRID)}
    dynamic["object_pointers"] = dynamic["object_pointers_pos"] = {0: pointers}
    example = bank(model, 2, 4)
    with torch.no_grad():
        program = torch.onnx.export(
            graph, tuple(example[n] for n in names), input_names=names, output_names=["conditioned"],
            dynamic_shapes=dynamic, opset_version=18, dynamo=True, verbose=False,
        )  # fmt: skip
    assert program is not None
    program.save(tmp_path / "memory_attention.onnx")
    session = ort.InferenceSession(str(tmp_path / "memory_attention.onnx"), providers=["CPUExecutionProvider"])
    for frames_, pointers_ in [(1, 2), (3, 6), (7, 32)]:
        inputs = bank(model, frames_, pointers_, seed=frames_)
        (got,) = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        with torch.no_grad():
            expected = sam2_memory_attention(model, inputs).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
