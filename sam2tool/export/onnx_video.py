"""The graphs of SAM 2 video tracking beyond the image encoder and mask decoder, for ONNX.

:class:`MemoryEncoderGraph` turns the current frame's features and its predicted mask into the
frame's memory (``SAM2Base._encode_new_memory``); :class:`VideoDecoderGraph` is the prompt encoder
and mask decoder as tracking runs them (``SAM2Base._forward_sam_heads``), with the object score
and pointer; :class:`MaskPromptGraph` takes a mask prompt as the frame's output, as sam2.1 does.
Memory attention, which reads the memories and pointers, is
:class:`sam2tool.export.onnx_rope.MemoryAttentionGraph`.

:func:`tracking_graphs` lists the four with their shapes and check inputs for
:func:`sam2tool.export.onnx_export.export_onnx`, and :func:`write_manifest` writes
``onnx_manifest.json`` beside them. The runtime that chains them is
:mod:`sam2tool.models.onnx_tracker`; it rounds stored memories to bfloat16 as Meta's video
predictor does (the graphs take and return float32).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sam2tool.errors import ExportError
from sam2tool.export.onnx_export import GraphSpec, MaskDecoderGraph, Shape
from sam2tool.export.onnx_rope import MemoryAttentionGraph
from sam2tool.models.onnx_bundle import (
    GRAPH_FILES,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    TRACKING_KEYS,
    file_sha256,
)

MEMORY_ATTENTION_FILE = GRAPH_FILES["memory_attention"]
MEMORY_ENCODER_FILE = GRAPH_FILES["memory_encoder"]
VIDEO_DECODER_FILE = GRAPH_FILES["video_decoder"]
MASK_PROMPT_FILE = GRAPH_FILES["mask_prompt"]


class MemoryEncoderGraph(nn.Module):
    """One object's memory of one frame, as ``SAM2Base._encode_new_memory`` computes it (eval mode).

    Inputs (batch 1; ``C`` the hidden width, ``S`` the image size, ``g = S / 16``):

    - ``features`` ``[1, C, g, g]``: the frame's lowest-resolution backbone features (without memory);
    - ``mask_logits`` ``[1, 1, S, S]``: the object's predicted mask logits at the model's input size;
    - ``object_score_logits`` ``[1, 1]``: the logit that the object is in the frame;
    - ``binarize`` ``[1]``: 1 when the mask came from clicks or a box on a conditioning frame
      (sam2 then encodes ``mask > 0`` instead of its sigmoid), else 0.

    Outputs: ``memory`` ``[1, Cm, g, g]`` (``Cm`` the memory width; a frame where the object is
    absent gets sam2.1's no-object embedding) and ``memory_pos`` ``[1, Cm, g, g]``, its positional
    encoding. sam2's video predictor stores ``memory`` rounded to bfloat16; the graph returns
    float32, and a tracker that is to equal Meta's predictor rounds it before storing it.

    Args:
        model: A ``SAM2Base``.

    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        if model.non_overlap_masks_for_mem_enc:
            raise ValueError("non_overlap_masks_for_mem_enc needs every object at once; it is not supported")
        self.memory_encoder = model.memory_encoder
        self.binarize_from_prompts = bool(model.binarize_mask_from_pts_for_mem_enc)
        self.scale = float(model.sigmoid_scale_for_mem_enc)
        self.bias = float(model.sigmoid_bias_for_mem_enc)
        self.no_obj_embed_spatial = model.no_obj_embed_spatial

    def forward(
        self,
        features: torch.Tensor,
        mask_logits: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(memory, memory_pos)``."""
        mask = torch.sigmoid(mask_logits)
        if self.binarize_from_prompts:
            mask = torch.where(binarize.reshape(1, 1, 1, 1) > 0.5, (mask_logits > 0).to(mask.dtype), mask)
        mask = mask * self.scale + self.bias
        out = self.memory_encoder(features, mask, skip_mask_sigmoid=True)
        memory: torch.Tensor = out["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).to(memory.dtype)  # [1, 1]
            memory = memory + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        position: torch.Tensor = out["vision_pos_enc"][0]
        return memory, position.to(memory.dtype)


#: The logit sam2 gives every pixel of a mask whose object is scored absent (``NO_OBJ_SCORE``).
NO_OBJECT_LOGIT = -1024.0


class VideoDecoderGraph(nn.Module):
    """SAM 2's prompt encoder and mask decoder as tracking uses them (``SAM2Base._forward_sam_heads``).

    Inputs (batch 1): ``image_embed`` ``[1, C, g, g]`` (the frame's features, conditioned on memory
    or with ``no_mem_embed`` added), ``high_res_feats_0`` ``[1, C/8, S/4, S/4]``,
    ``high_res_feats_1`` ``[1, C/4, S/8, S/8]``, ``point_coords`` ``[1, N, 2]`` and ``point_labels``
    ``[1, N]`` (as in ``mask_decoder.onnx``; a frame without clicks passes one point labelled -1),
    ``mask_input`` ``[1, 1, S/4, S/4]`` with ``has_mask_input`` ``[1]``, and ``multimask`` ``[1]``:
    1 to choose among the three multimask outputs by predicted IoU (sam2's ``multimask_output``),
    0 for the single-mask output (with sam2's fall-back to the best multimask output when the
    single mask is unstable).

    Outputs: ``low_res_masks`` ``[1, 1, S/4, S/4]`` and ``high_res_masks`` ``[1, 1, S, S]`` (the
    chosen mask's logits; -1024 everywhere when the object is scored absent), ``iou`` ``[1, 1]``,
    ``object_score_logits`` ``[1, 1]`` and ``object_pointer`` ``[1, C]`` (the token that memory
    attention reads on later frames; the no-object pointer when the object is absent).

    Args:
        model: A ``SAM2Base`` with object scores and high-resolution features.

    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        if not model.pred_obj_scores or model.soft_no_obj_ptr or not model.use_high_res_features_in_sam:
            raise ValueError("tracking graphs need pred_obj_scores, hard no-object pointers and high-res features")
        self.heads = MaskDecoderGraph(model)  # the prompt encoder and mask decoder of mask_decoder.onnx
        self.mask_decoder = model.sam_mask_decoder
        self.obj_ptr_proj = model.obj_ptr_proj
        self.no_obj_ptr = model.no_obj_ptr
        self.fixed_no_obj_ptr = bool(model.fixed_no_obj_ptr)
        self.multimask_token_for_pointer = bool(model.use_multimask_token_for_obj_ptr)
        self.image_size = int(model.image_size)

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        multimask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(low_res_masks, high_res_masks, iou, object_score_logits, object_pointer)``."""
        masks, ious, tokens, scores = self.heads.decode(
            image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels, mask_input, has_mask_input
        )
        # multimask_output=False: token 0, or the best multimask output where token 0 is unstable.
        if self.mask_decoder.dynamic_multimask_via_stability:
            single_mask, single_iou = self.mask_decoder._dynamic_multimask_via_stability(masks, ious)
        else:
            single_mask, single_iou = masks[:, 0:1], ious[:, 0:1]
        # multimask_output=True: the multimask output with the highest predicted IoU, and its token.
        best = torch.argmax(ious[:, 1:], dim=-1)  # [1]
        multi_mask = torch.index_select(masks[:, 1:], 1, best)
        multi_iou = torch.index_select(ious[:, 1:], 1, best)
        multi_token = (
            torch.index_select(tokens[:, 1:], 1, best)[:, 0] if self.multimask_token_for_pointer else tokens[:, 0]
        )
        use_multi = multimask.reshape(1, 1) > 0.5
        low = torch.where(use_multi.reshape(1, 1, 1, 1), multi_mask, single_mask)
        iou = torch.where(use_multi, multi_iou, single_iou)
        token = torch.where(use_multi, multi_token, tokens[:, 0])
        appearing = scores > 0  # [1, 1]
        low = torch.where(appearing.reshape(1, 1, 1, 1), low, torch.full_like(low, NO_OBJECT_LOGIT)).float()
        high = nn.functional.interpolate(
            low, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        pointer = self.obj_ptr_proj(token)
        present = appearing.to(pointer.dtype)
        if self.fixed_no_obj_ptr:
            pointer = present * pointer
        pointer = pointer + (1 - present) * self.no_obj_ptr
        return low, high, iou, scores, pointer


class MaskPromptGraph(nn.Module):
    """A mask prompt taken as the frame's output, as sam2.1 does it (``SAM2Base._use_mask_as_output``).

    Inputs (batch 1): ``features`` ``[1, C, g, g]`` (the frame's raw lowest-resolution features,
    without memory or ``no_mem_embed``), ``high_res_feats_0``, ``high_res_feats_1`` (as for the
    decoder) and ``mask`` ``[1, 1, S, S]``: the object's binary mask (0 or 1) at the model's input
    size.

    Outputs, as :class:`VideoDecoderGraph` names them: ``low_res_masks`` ``[1, 1, S/4, S/4]`` (the
    mask as logits of +-10, downsampled with antialiasing), ``high_res_masks`` ``[1, 1, S, S]``,
    ``iou`` ``[1, 1]`` (1), ``object_score_logits`` ``[1, 1]`` (+10 when the mask has a pixel, else
    -10) and ``object_pointer`` ``[1, C]`` (the decoder's pointer for the mask given as a mask
    input through ``mask_downsample``; the no-object pointer for an empty mask).

    Args:
        model: A ``SAM2Base`` that uses mask inputs as outputs and object pointers.

    """

    #: sam2's logits for the pixels inside and outside a mask prompt: ``20 * mask - 10``.
    SCALE, BIAS = 20.0, -10.0

    def __init__(self, model: Any) -> None:
        super().__init__()
        if not model.use_mask_input_as_output_without_sam or not model.use_obj_ptrs_in_encoder:
            raise ValueError("mask prompts as outputs need use_mask_input_as_output_without_sam and object pointers")
        self.decoder = VideoDecoderGraph(model)
        self.mask_downsample = model.mask_downsample
        self.no_obj_ptr = model.no_obj_ptr
        self.fixed_no_obj_ptr = bool(model.fixed_no_obj_ptr)

    def forward(
        self, features: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(low_res_masks, high_res_masks, iou, object_score_logits, object_pointer)``."""
        high = mask.float() * self.SCALE + self.BIAS
        size = (high.shape[-2] // 4, high.shape[-1] // 4)
        low = nn.functional.interpolate(high, size=size, mode="bilinear", align_corners=False, antialias=True)
        no_points = torch.zeros(1, 1, 2, dtype=features.dtype)
        no_labels = -torch.ones(1, 1, dtype=features.dtype)
        one, zero = torch.ones(1, dtype=features.dtype), torch.zeros(1, dtype=features.dtype)
        pointer = self.decoder(
            features,
            high_res_feats_0,
            high_res_feats_1,
            no_points,
            no_labels,
            self.mask_downsample(mask.float()),
            one,
            zero,
        )[4]
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).to(pointer.dtype)  # [1, 1]
        scores = self.SCALE * present + self.BIAS
        if self.fixed_no_obj_ptr:
            pointer = present * pointer
        pointer = pointer + (1 - present) * self.no_obj_ptr
        return low, high, torch.ones(1, 1, dtype=low.dtype), scores, pointer


#: Sizes of the dynamic axes in the two check cases and the export example (index 2).
_MEMORIES = (1, 4, 3)
_POINTERS = (0, 5, 3)
_POINTS = (1, 3, 3)


def tracking_graphs(model: Any, image_size: int) -> list[GraphSpec]:
    """The four tracking graphs of ``model`` with their shapes and check inputs.

    Raises:
        ExportError: The model tracks in a way the graphs do not reproduce (every official SAM 2
            and 2.1 model is supported).

    """
    _check_tracking_model(model)
    s, g = image_size, image_size // 16
    width, memory_width = int(model.hidden_dim), int(model.mem_dim)
    features: dict[str, Shape] = {"features": [1, width, g, g]}
    high_res: dict[str, Shape] = {
        "high_res_feats_0": [1, width // 8, s // 4, s // 4],
        "high_res_feats_1": [1, width // 4, s // 8, s // 8],
    }
    decoded: dict[str, Shape] = {
        "low_res_masks": [1, 1, s // 4, s // 4],
        "high_res_masks": [1, 1, s, s],
        "iou": [1, 1],
        "object_score_logits": [1, 1],
        "object_pointer": [1, width],
    }
    try:
        attention = MemoryAttentionGraph(model, image_size).eval()
        encoder = MemoryEncoderGraph(model).eval()
        decoder = VideoDecoderGraph(model).eval()
        prompt = MaskPromptGraph(model).eval()
    except ValueError as error:
        raise ExportError(f"ONNX tracking graphs: {error}") from None
    num_maskmem = int(model.num_maskmem)

    def attention_case(
        encoded: Mapping[str, torch.Tensor], index: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        frames, pointers = _MEMORIES[index], _POINTERS[index]
        return {
            "features": encoded["vision_features"],
            "features_pos": encoded["vision_pos_enc"],
            "memory": torch.randn(frames, memory_width, g, g, generator=generator),
            "memory_pos": torch.randn(frames, memory_width, g, g, generator=generator),
            "memory_temporal_index": torch.randint(0, num_maskmem, (frames,), generator=generator),
            "object_pointers": torch.randn(pointers, width, generator=generator),
            "object_pointer_positions": torch.rand(pointers, generator=generator) * 2 - 1,
        }

    def encoder_case(
        encoded: Mapping[str, torch.Tensor], index: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return {
            "features": encoded["vision_features"],
            "mask_logits": 8 * torch.randn(1, 1, s, s, generator=generator),
            "object_score_logits": torch.tensor([[2.0 if index != 1 else -3.0]]),
            "binarize": torch.tensor([1.0 if index == 0 else 0.0]),
        }

    def decoder_case(
        encoded: Mapping[str, torch.Tensor], index: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        points = _POINTS[index]
        labels = [-1.0] if points == 1 else [2.0, 3.0, 1.0][:points] + [1.0] * (points - 3)
        return {
            "image_embed": encoded["image_embed"],
            "high_res_feats_0": encoded["high_res_feats_0"],
            "high_res_feats_1": encoded["high_res_feats_1"],
            "point_coords": torch.rand(1, points, 2, generator=generator) * s,
            "point_labels": torch.tensor([labels]),
            "mask_input": 4 * torch.randn(1, 1, s // 4, s // 4, generator=generator),
            "has_mask_input": torch.tensor([float(index != 0)]),
            "multimask": torch.tensor([float(index != 1)]),
        }

    def prompt_case(
        encoded: Mapping[str, torch.Tensor], index: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        mask = torch.zeros(1, 1, s, s)
        if index != 1:  # an empty mask in one check case: the object is absent
            top, left = (int(v) for v in torch.randint(0, s // 2, (2,), generator=generator))
            mask[..., top : top + s // 3, left : left + s // 4] = 1.0
        return {
            "features": encoded["vision_features"],
            "high_res_feats_0": encoded["high_res_feats_0"],
            "high_res_feats_1": encoded["high_res_feats_1"],
            "mask": mask,
        }

    position: dict[str, Shape] = {"features_pos": [1, width, g, g]}
    bank: dict[str, Shape] = {
        "memory": ["num_memories", memory_width, g, g],
        "memory_pos": ["num_memories", memory_width, g, g],
        "memory_temporal_index": ["num_memories"],
        "object_pointers": ["num_pointers", width],
        "object_pointer_positions": ["num_pointers"],
    }
    prompts: dict[str, Shape] = {
        "point_coords": [1, "num_points", 2],
        "point_labels": [1, "num_points"],
        "mask_input": [1, 1, s // 4, s // 4],
        "has_mask_input": [1],
        "multimask": [1],
    }
    return [
        GraphSpec(
            MEMORY_ATTENTION_FILE,
            attention,
            {**features, **position, **bank},
            {"conditioned": [1, width, g, g]},
            int64_inputs=("memory_temporal_index",),
            make_case=attention_case,
            dynamic_minimum={"num_pointers": 0},
        ),
        GraphSpec(
            MEMORY_ENCODER_FILE,
            encoder,
            {**features, "mask_logits": [1, 1, s, s], "object_score_logits": [1, 1], "binarize": [1]},
            {"memory": [1, memory_width, g, g], "memory_pos": [1, memory_width, g, g]},
            make_case=encoder_case,
        ),
        GraphSpec(
            VIDEO_DECODER_FILE,
            decoder,
            {"image_embed": [1, width, g, g], **high_res, **prompts},
            decoded,
            make_case=decoder_case,
        ),
        GraphSpec(
            MASK_PROMPT_FILE, prompt, {**features, **high_res, "mask": [1, 1, s, s]}, decoded, make_case=prompt_case
        ),
    ]


def _check_tracking_model(model: Any) -> None:
    """Raise ExportError for settings the tracker does not reproduce, naming the setting."""
    required = {
        "directly_add_no_mem_embed": True,
        "use_mask_input_as_output_without_sam": True,
        "use_obj_ptrs_in_encoder": True,
        "pred_obj_scores": True,
        "non_overlap_masks_for_mem_enc": False,
    }
    for name, value in required.items():
        if bool(getattr(model, name, not value)) != value:
            raise ExportError(
                f"ONNX tracking graphs need the model setting {name}={str(value).lower()} (as every official "
                "SAM 2 and 2.1 model has); export with --format onnx only from such a model"
            )
    if int(model.num_maskmem) < 1:
        raise ExportError("ONNX tracking graphs need a model with memory (num_maskmem >= 1)")


def write_manifest(model: Any, report: Any, folder: Path) -> Path:
    """Write ``onnx_manifest.json``: sizes, the tracking settings, each graph's I/O, opset and SHA-256."""
    from sam2tool import __version__
    from sam2tool.export.weights import write_json

    graphs = {}
    for role, file in GRAPH_FILES.items():
        check = next(graph for graph in report.graphs if graph.file == file)
        entry = check.to_json()
        graphs[role] = {
            "file": file,
            "sha256": file_sha256(folder / file),
            "inputs": entry["inputs"],
            "outputs": entry["outputs"],
            "max_abs_diff": entry["max_abs_diff"],
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "sam2tool_version": __version__,
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": report.opset,
        "image_size": report.image_size,
        "hidden_dim": int(model.hidden_dim),
        "memory_dim": int(model.mem_dim),
        "tracking": {key: _plain(getattr(model, key)) for key in TRACKING_KEYS},
        "temporal_encoding": {
            "memory": "memory_temporal_index: num_maskmem - 1 for a conditioning frame, d - 1 for the d-th most "
            "recent memory (d < num_maskmem; the frame d frames away at memory_temporal_stride_for_eval 1)",
            "object_pointers": "object_pointer_positions: frame distance / (min(frames, max_obj_ptrs_in_encoder) - 1), "
            "signed for conditioning frames with use_signed_tpos_enc_to_obj_ptrs; sine-encoded and projected "
            "inside memory_attention.onnx",
            "add_tpos_enc_to_obj_ptrs": bool(model.add_tpos_enc_to_obj_ptrs),
            "proj_tpos_enc_in_obj_ptrs": bool(model.proj_tpos_enc_in_obj_ptrs),
        },
        "memory_dtype": "bfloat16 (stored rounded, as sam2's video predictor stores memories; fed as float32)",
        "graphs": graphs,
    }
    return write_json(folder / MANIFEST_FILE, manifest)


def _plain(value: Any) -> int | bool:
    """A model setting as a JSON bool or int."""
    return value if isinstance(value, bool) else int(value)
