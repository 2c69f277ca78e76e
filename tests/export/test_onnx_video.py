"""The memory encoder graph: equal to sam2's _encode_new_memory, in torch and in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2tool.export.onnx_video import MemoryEncoderGraph
from tests.export.test_onnx_rope import GRID, SIZE, micro


def encoder_inputs(model: torch.nn.Module, score: float, binarize: float, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "features": torch.randn(1, model.hidden_dim, GRID, GRID, generator=generator),
        "mask_logits": 8 * torch.randn(1, 1, SIZE, SIZE, generator=generator),
        "object_score_logits": torch.tensor([[score]]),
        "binarize": torch.tensor([binarize]),
    }


def sam2_memory(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    features = inputs["features"]
    return model._encode_new_memory(
        current_vision_feats=[features.flatten(2).permute(2, 0, 1)],
        feat_sizes=[(GRID, GRID)],
        pred_masks_high_res=inputs["mask_logits"],
        object_score_logits=inputs["object_score_logits"],
        is_mask_from_pts=bool(inputs["binarize"].item() > 0.5),
    )


CASES = [(2.0, 0.0), (2.0, 1.0), (-3.0, 0.0)]  # present from a mask, present from clicks, absent


@pytest.mark.parametrize(("score", "binarize"), CASES)
def test_memory_encoder_graph_equals_sam2(score: float, binarize: float) -> None:
    model = micro()
    torch.nn.init.normal_(model.no_obj_embed_spatial)  # zeros at random init: make "absent" visible
    inputs = encoder_inputs(model, score, binarize)
    with torch.no_grad():
        expected, expected_pos = sam2_memory(model, inputs)
        memory, position = MemoryEncoderGraph(model).eval()(**inputs)
    assert memory.shape == (1, model.mem_dim, GRID, GRID) == position.shape
    torch.testing.assert_close(memory, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(position, expected_pos[0], rtol=0, atol=0)


def test_memory_encoder_runs_in_onnxruntime(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    model = micro()
    torch.nn.init.normal_(model.no_obj_embed_spatial)
    example = encoder_inputs(model, 1.0, 0.0, seed=5)
    names = list(example)
    with torch.no_grad():
        program = torch.onnx.export(
            MemoryEncoderGraph(model).eval(), tuple(example.values()), input_names=names,
            output_names=["memory", "memory_pos"], opset_version=18, dynamo=True, verbose=False,
        )  # fmt: skip
    assert program is not None
    program.save(tmp_path / "memory_encoder.onnx")
    session = ort.InferenceSession(str(tmp_path / "memory_encoder.onnx"), providers=["CPUExecutionProvider"])
    for index, (score, binarize) in enumerate(CASES):
        inputs = encoder_inputs(model, score, binarize, seed=index)
        memory, position = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        with torch.no_grad():
            expected, expected_pos = sam2_memory(model, inputs)
        np.testing.assert_allclose(memory, expected.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(position, expected_pos[0].numpy(), rtol=0, atol=1e-5)
