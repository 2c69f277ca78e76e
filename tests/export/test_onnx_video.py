"""The video tracking graphs (memory encoder, decoder with object pointers): equal to sam2, in torch and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2tool.export.onnx_video import MaskPromptGraph, MemoryEncoderGraph, VideoDecoderGraph
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
    graph = MemoryEncoderGraph(model).eval()
    assert graph.binarize_from_prompts  # as the video predictor builds the model
    with torch.no_grad():
        expected, expected_pos = sam2_memory(model, inputs)
        memory, position = graph(**inputs)
        other, _ = graph(**{**inputs, "binarize": 1.0 - inputs["binarize"]})
    assert not torch.allclose(memory, other, atol=1e-3)  # binarizing the mask changes the memory
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


def decoder_inputs(model: torch.nn.Module, labels: list[float], mask: bool, multimask: bool, seed: int = 0):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(seed)
    hidden = model.hidden_dim
    return {
        "image_embed": torch.randn(1, hidden, GRID, GRID, generator=generator),
        "high_res_feats_0": torch.randn(1, hidden // 8, SIZE // 4, SIZE // 4, generator=generator),
        "high_res_feats_1": torch.randn(1, hidden // 4, SIZE // 8, SIZE // 8, generator=generator),
        "point_coords": torch.rand(1, len(labels), 2, generator=generator) * SIZE,
        "point_labels": torch.tensor([labels]),
        "mask_input": torch.randn(1, 1, SIZE // 4, SIZE // 4, generator=generator)
        if mask
        else torch.zeros(1, 1, SIZE // 4, SIZE // 4),
        "has_mask_input": torch.tensor([1.0 if mask else 0.0]),
        "multimask": torch.tensor([1.0 if multimask else 0.0]),
    }


def sam2_heads(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """_forward_sam_heads: (low_res_masks, high_res_masks, iou, object_score_logits, obj_ptr)."""
    labels = inputs["point_labels"]
    points = None if bool((labels == -1).all()) else {"point_coords": inputs["point_coords"], "point_labels": labels}
    out = model._forward_sam_heads(
        backbone_features=inputs["image_embed"],
        point_inputs=points,
        mask_inputs=inputs["mask_input"] if inputs["has_mask_input"].item() > 0.5 else None,
        high_res_features=[inputs["high_res_feats_0"], inputs["high_res_feats_1"]],
        multimask_output=bool(inputs["multimask"].item() > 0.5),
    )
    _, _, ious, low, high, pointer, scores = out
    multimask = inputs["multimask"].item() > 0.5
    iou = ious.gather(1, ious.argmax(-1, keepdim=True)) if multimask else ious
    return [low, high, iou, scores, pointer]


def score_object(model: torch.nn.Module, present: bool) -> None:
    """Make the object score's last bias decide presence, whatever the inputs."""
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias.fill_(50.0 if present else -50.0)


#: (point labels, mask input, multimask): a click, a box, a tracking frame, a mask input (earlier
#: logits, as when clicks are added to a tracked frame) alone and with clicks.
DECODER_CASES = [
    ([1.0], False, True),
    ([2.0, 3.0], False, False),
    ([-1.0], False, True),
    ([-1.0], True, False),
    ([1.0, 0.0, 1.0], True, False),
]


@pytest.mark.parametrize(("labels", "mask", "multimask"), DECODER_CASES)
@pytest.mark.parametrize("present", [True, False])
def test_video_decoder_graph_equals_sam2_heads(labels: list[float], mask: bool, multimask: bool, present: bool) -> None:
    model = micro()
    torch.nn.init.normal_(model.no_obj_ptr)
    score_object(model, present)
    inputs = decoder_inputs(model, labels, mask, multimask)
    with torch.no_grad():
        expected = sam2_heads(model, inputs)
        got = VideoDecoderGraph(model).eval()(**inputs)
    assert (got[3] > 0).item() == present
    for name, a, b in zip(["low", "high", "iou", "score", "pointer"], got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_video_decoder_runs_in_onnxruntime(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    model = micro()
    example = decoder_inputs(model, [1.0, 0.0, 1.0], True, True, seed=9)
    names = list(example)
    points = torch.export.Dim("num_points", min=1)
    dynamic = {name: ({1: points} if name in ("point_coords", "point_labels") else None) for name in names}
    outputs = ["low_res_masks", "high_res_masks", "iou", "object_score_logits", "object_pointer"]
    with torch.no_grad():
        program = torch.onnx.export(
            VideoDecoderGraph(model).eval(), tuple(example.values()), input_names=names, output_names=outputs,
            dynamic_shapes=dynamic, opset_version=18, dynamo=True, verbose=False,
        )  # fmt: skip
    assert program is not None
    program.save(tmp_path / "decoder.onnx")
    session = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for index, (labels, mask, multimask) in enumerate(DECODER_CASES):
        inputs = decoder_inputs(model, labels, mask, multimask, seed=index)
        got = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        with torch.no_grad():
            expected = sam2_heads(model, inputs)
        for name, a, b in zip(outputs, got, expected, strict=True):
            np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4, err_msg=f"{labels} {mask} {multimask}: {name}")


def test_unstable_single_masks_fall_back_to_the_best_multimask_output() -> None:
    """sam2's stability fall-back (multimask off): with no mask stable enough, the graph follows sam2."""
    model = micro()
    score_object(model, present=True)
    decoder = model.sam_mask_decoder
    assert decoder.dynamic_multimask_via_stability  # as the video predictor builds the model
    inputs = decoder_inputs(model, [2.0, 3.0], False, False, seed=3)
    graph = VideoDecoderGraph(model).eval()
    with torch.no_grad():
        decoder.dynamic_multimask_stability_thresh = -1.0  # every single mask counts as stable: token 0
        stable = graph(**inputs)[0]
        decoder.dynamic_multimask_stability_thresh = 2.0  # a stability score is at most 1: always fall back
        expected = sam2_heads(model, inputs)
        got = graph(**inputs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not torch.allclose(got[0], stable, atol=1e-3)  # the fall-back chose another mask


def mask_prompt_inputs(model: torch.nn.Module, empty: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    decoder = decoder_inputs(model, [-1.0], False, False, seed=seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    centre = torch.rand(2, generator=generator) * SIZE / 2 + SIZE / 4
    mask = (((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < (SIZE / 5) ** 2).float()[None, None]
    return {
        "features": decoder["image_embed"],
        "high_res_feats_0": decoder["high_res_feats_0"],
        "high_res_feats_1": decoder["high_res_feats_1"],
        "mask": torch.zeros_like(mask) if empty else mask,
    }


def sam2_mask_as_output(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    low, high, iou, _, _, pointer, scores = model._use_mask_as_output(
        backbone_features=inputs["features"],
        high_res_features=[inputs["high_res_feats_0"], inputs["high_res_feats_1"]],
        mask_inputs=inputs["mask"],
    )
    return [low, high, iou, scores, pointer]


@pytest.mark.parametrize("empty", [False, True])
def test_mask_prompt_graph_equals_sam2(empty: bool) -> None:
    model = micro()
    torch.nn.init.normal_(model.no_obj_ptr)
    inputs = mask_prompt_inputs(model, empty)
    with torch.no_grad():
        expected = sam2_mask_as_output(model, inputs)
        got = MaskPromptGraph(model).eval()(**inputs)
    assert (got[3] > 0).item() == (not empty)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_mask_prompt_runs_in_onnxruntime(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime")
    model = micro()
    torch.nn.init.normal_(model.no_obj_ptr)
    example = mask_prompt_inputs(model, False, seed=4)
    outputs = ["low_res_masks", "high_res_masks", "iou", "object_score_logits", "object_pointer"]
    with torch.no_grad():
        program = torch.onnx.export(
            MaskPromptGraph(model).eval(), tuple(example.values()), input_names=list(example),
            output_names=outputs, opset_version=18, dynamo=True, verbose=False,
        )  # fmt: skip
    assert program is not None
    program.save(tmp_path / "mask_prompt.onnx")
    session = ort.InferenceSession(str(tmp_path / "mask_prompt.onnx"), providers=["CPUExecutionProvider"])
    for seed, empty in [(0, False), (1, False), (2, True)]:
        inputs = mask_prompt_inputs(model, empty, seed=seed)
        got = session.run(None, {name: value.numpy() for name, value in inputs.items()})
        with torch.no_grad():
            expected = sam2_mask_as_output(model, inputs)
        for name, a, b in zip(outputs, got, expected, strict=True):
            np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-4, err_msg=f"{seed} {empty}: {name}")
