"""Export a SAM 2 model as a Hugging Face ``transformers`` SAM 2 video model (``Sam2VideoModel``).

The folder ``hf/`` of an export holds what ``save_pretrained`` writes for a ``Sam2VideoModel`` and
its ``Sam2VideoProcessor`` (``config.json``, ``model.safetensors`` and the processor's JSON files),
so that both load with ``from_pretrained("export/hf")`` and push to the Hub with ``push_to_hub``.

Nothing is taken from transformers' own conversion scripts (they are not in its wheel, pick one of
four fixed presets and check Meta's IoU values on a downloaded image): the configuration is read off
the built model (:func:`hf_config`) and the weights are renamed with the table :data:`KEY_RULES`.

``hf_config`` reads every size-dependent field from one number, the model's input size ``S``: the
top-level and prompt-encoder ``image_size``, the Hiera ``image_size``, the vision
``backbone_feature_sizes`` (``S/4``, ``S/8``, ``S/16``), the memory-attention RoPE feature sizes
(``S/16``), and the processor's ``size`` (``S``) and ``mask_size`` (``S/4``).

SAM 2 and SAM 2.1 differ in two features transformers can switch: SAM 2.1's spatial embedding of
occluded objects (``no_obj_embed_spatial`` -> ``enable_occlusion_spatial_embedding``) and its
projected, signed temporal encoding of object pointers (``add_tpos_enc_to_obj_ptrs`` ->
``enable_temporal_pos_encoding_for_object_pointers``). Every other behaviour transformers
implements one way only; :func:`unsupported` names each setting of a model that differs from it,
and the export refuses such a model before writing anything.

The export checks itself (:func:`check_hf`): it loads the folder with ``from_pretrained``, tracks a
probe video with transformers' video API and with sam2's video predictor on the same weights, and
compares the masks frame by frame.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sam2tool.errors import ExportError, UsageError

#: The sub-folder of an export that ``--format hf`` writes.
HF_FOLDER = "hf"
#: The oldest transformers release with ``Sam2VideoModel`` (4.55 has none).
MIN_TRANSFORMERS = "4.56.0"
#: What to run when transformers is missing or too old.
INSTALL_HINT = "pip install 'sam2tool[hf]'"
#: Smallest share of equal pixels, per frame and object, between transformers and sam2 on the probe.
DEFAULT_AGREEMENT = 0.999
#: How the export is loaded and run (the model card's ``usage``; ``{dir}`` is the export folder).
USAGE = (
    "from transformers import Sam2VideoModel, Sam2VideoProcessor; "
    "model = Sam2VideoModel.from_pretrained('hf').eval(); processor = Sam2VideoProcessor.from_pretrained('hf')"
)

# ---------------------------------------------------------------------------------------------
# Key mapping: sam2 (SAM2Base.state_dict) -> transformers (Sam2VideoModel.state_dict)
# ---------------------------------------------------------------------------------------------

#: Prefixes of sam2 ``MLP`` modules. sam2 numbers their linear layers ``layers.0 .. layers.n-1``;
#: transformers' ``Sam2FeedForward`` calls them ``proj_in``, ``layers.0 .. layers.n-3``, ``proj_out``.
_MLP = re.compile(
    r"^(?P<prefix>.*(?:\.mlp|output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)|obj_ptr_proj)"
    r"\.layers\.(?P<index>\d+)\.(?P<leaf>weight|bias)$"
)

#: ``(sam2 key pattern, transformers key)``, tried in order; the first full match renames the key.
#: MLP layer indices are renamed before (see ``_MLP``); ``point_embeddings.i`` are stacked after.
KEY_RULES: tuple[tuple[str, str], ...] = (
    # Image encoder: Hiera trunk and FPN neck.
    (r"image_encoder\.trunk\.patch_embed\.proj\.(.+)", r"vision_encoder.backbone.patch_embed.projection.\1"),
    (r"image_encoder\.trunk\.blocks\.(\d+)\.norm(\d)\.(.+)", r"vision_encoder.backbone.blocks.\1.layer_norm\2.\3"),
    (r"image_encoder\.trunk\.(.+)", r"vision_encoder.backbone.\1"),
    (r"image_encoder\.neck\.convs\.(\d+)\.conv\.(.+)", r"vision_encoder.neck.convs.\1.\2"),
    # Prompt encoder. The random-Fourier matrix is shared by the prompt encoder and the image-wide
    # positional embedding in sam2; transformers holds two copies (see ``_SHARED_PE``).
    (r"sam_prompt_encoder\.mask_downscaling\.0\.(.+)", r"prompt_encoder.mask_embed.conv1.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.1\.(.+)", r"prompt_encoder.mask_embed.layer_norm1.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.3\.(.+)", r"prompt_encoder.mask_embed.conv2.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.4\.(.+)", r"prompt_encoder.mask_embed.layer_norm2.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.6\.(.+)", r"prompt_encoder.mask_embed.conv3.\1"),
    (r"sam_prompt_encoder\.(not_a_point_embed|no_mask_embed)\.(.+)", r"prompt_encoder.\1.\2"),
    # Mask decoder (two-way transformer, upscaling, heads).
    (r"sam_mask_decoder\.transformer\.(.+)\.out_proj\.(.+)", r"mask_decoder.transformer.\1.o_proj.\2"),
    (
        r"sam_mask_decoder\.transformer\.layers\.(\d+)\.norm(\d)\.(.+)",
        r"mask_decoder.transformer.layers.\1.layer_norm\2.\3",
    ),
    (r"sam_mask_decoder\.transformer\.norm_final_attn\.(.+)", r"mask_decoder.transformer.layer_norm_final_attn.\1"),
    (r"sam_mask_decoder\.output_upscaling\.0\.(.+)", r"mask_decoder.upscale_conv1.\1"),
    (r"sam_mask_decoder\.output_upscaling\.1\.(.+)", r"mask_decoder.upscale_layer_norm.\1"),
    (r"sam_mask_decoder\.output_upscaling\.3\.(.+)", r"mask_decoder.upscale_conv2.\1"),
    (r"sam_mask_decoder\.(.+)", r"mask_decoder.\1"),
    # Memory attention.
    (
        r"memory_attention\.layers\.(\d+)\.(self_attn|cross_attn_image)\.out_proj\.(.+)",
        r"memory_attention.layers.\1.\2.o_proj.\3",
    ),
    (r"memory_attention\.layers\.(\d+)\.norm(\d)\.(.+)", r"memory_attention.layers.\1.layer_norm\2.\3"),
    (r"memory_attention\.norm\.(.+)", r"memory_attention.layer_norm.\1"),
    (r"memory_attention\.(.+)", r"memory_attention.\1"),
    # Memory encoder (mask downsampler: see ``_downsampler_key``; fuser; projections).
    (r"memory_encoder\.pix_feat_proj\.(.+)", r"memory_encoder.feature_projection.\1"),
    (r"memory_encoder\.fuser\.layers\.(\d+)\.gamma", r"memory_encoder.memory_fuser.layers.\1.scale"),
    (r"memory_encoder\.fuser\.layers\.(\d+)\.dwconv\.(.+)", r"memory_encoder.memory_fuser.layers.\1.depthwise_conv.\2"),
    (r"memory_encoder\.fuser\.layers\.(\d+)\.norm\.(.+)", r"memory_encoder.memory_fuser.layers.\1.layer_norm.\2"),
    (
        r"memory_encoder\.fuser\.layers\.(\d+)\.pwconv(\d)\.(.+)",
        r"memory_encoder.memory_fuser.layers.\1.pointwise_conv\2.\3",
    ),
    (r"memory_encoder\.out_proj\.(.+)", r"memory_encoder.projection.\1"),
    # Tracking parameters of SAM2Base.
    (r"maskmem_tpos_enc", r"memory_temporal_positional_encoding"),
    (r"no_mem_embed", r"no_memory_embedding"),
    (r"no_mem_pos_enc", r"no_memory_positional_encoding"),
    (r"no_obj_ptr", r"no_object_pointer"),
    (r"no_obj_embed_spatial", r"occlusion_spatial_embedding_parameter"),
    (r"obj_ptr_proj\.(.+)", r"object_pointer_proj.\1"),
    (r"obj_ptr_tpos_proj\.(.+)", r"temporal_positional_encoding_projection_layer.\1"),
    (r"mask_downsample\.(.+)", r"mask_downsample.\1"),
)
_COMPILED_RULES = tuple((re.compile(pattern), target) for pattern, target in KEY_RULES)
_SHARED_PE = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_SHARED_PE_TARGETS = (
    "shared_image_embedding.positional_embedding",
    "prompt_encoder.shared_embedding.positional_embedding",
)
_POINT_EMBEDDING = re.compile(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight")
_DOWNSAMPLER = re.compile(r"memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(weight|bias)")


def hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """sam2's ``state_dict`` renamed to ``Sam2VideoModel``'s (same tensors, other names).

    Raises:
        ExportError: A key matches no rule (a model this mapping does not know).

    """
    depths: dict[str, int] = {}
    for key in state:
        match = _MLP.match(key)
        if match:
            depths[match["prefix"]] = max(depths.get(match["prefix"], 0), int(match["index"]) + 1)
    downsampler = sorted({int(m[1]) for key in state if (m := _DOWNSAMPLER.fullmatch(key))})
    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        if key == _SHARED_PE:
            out.update({target: value for target in _SHARED_PE_TARGETS})
            continue
        if point := _POINT_EMBEDDING.fullmatch(key):
            points[int(point[1])] = value
            continue
        if down := _DOWNSAMPLER.fullmatch(key):
            out[_downsampler_key(int(down[1]), down[2], downsampler)] = value
            continue
        if mlp := _MLP.match(key):
            key = f"{mlp['prefix']}.{_mlp_layer(int(mlp['index']), depths[mlp['prefix']])}.{mlp['leaf']}"
        out[_rename(key)] = value
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)], dim=0)
    return out


def _mlp_layer(index: int, depth: int) -> str:
    if index == 0:
        return "proj_in"
    return "proj_out" if index == depth - 1 else f"layers.{index - 1}"


def _downsampler_key(index: int, leaf: str, indices: Sequence[int]) -> str:
    """sam2's ``Sequential`` (conv, norm, GELU) x n + conv -> ``layers.k.conv/layer_norm`` + ``final_conv``."""
    if index == max(indices):
        return f"memory_encoder.mask_downsampler.final_conv.{leaf}"
    layer, position = divmod(index, 3)
    part = {0: "conv", 1: "layer_norm"}.get(position)
    if part is None:
        raise ExportError(f"memory_encoder.mask_downsampler.encoder.{index}.{leaf}: no transformers weight for it")
    return f"memory_encoder.mask_downsampler.layers.{layer}.{part}.{leaf}"


def _rename(key: str) -> str:
    for pattern, target in _COMPILED_RULES:
        if pattern.fullmatch(key):
            return pattern.sub(target, key)
    raise ExportError(f"weight {key} has no counterpart in transformers' Sam2VideoModel")


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

#: Behaviours transformers' SAM 2 video model implements one way only: ``(setting, value it needs)``.
#: Names are sam2's (``SAM2Base`` and its modules), as in the model YAML.
FIXED_SETTINGS: tuple[tuple[str, Any], ...] = (
    ("use_high_res_features_in_sam", True),
    ("directly_add_no_mem_embed", True),
    ("use_mask_input_as_output_without_sam", True),
    ("use_obj_ptrs_in_encoder", True),
    ("only_obj_ptrs_in_the_past_for_eval", True),
    ("pred_obj_scores", True),
    ("pred_obj_scores_mlp", True),
    ("fixed_no_obj_ptr", True),
    ("soft_no_obj_ptr", False),
    ("use_mlp_for_obj_ptr_proj", True),
    ("use_multimask_token_for_obj_ptr", True),
    ("iou_prediction_use_sigmoid", True),
    ("binarize_mask_from_pts_for_mem_enc", True),
    ("non_overlap_masks_for_mem_enc", False),
    ("memory_temporal_stride_for_eval", 1),
    ("image_encoder.scalp", 1),
    ("image_encoder.neck.fpn_interp_model", "nearest"),
    ("image_encoder.neck.fuse_type", "sum"),
    ("memory_attention.pos_enc_at_input", True),
    ("memory_attention.layers.0.pos_enc_at_attn", False),
    ("memory_attention.layers.0.pos_enc_at_cross_attn_keys", True),
    ("memory_attention.layers.0.pos_enc_at_cross_attn_queries", False),
    ("memory_attention.layers.0.cross_attn_image.rope_k_repeat", True),
)
_MISSING = object()
#: The key/value width transformers gives every memory-attention cross-attention
#: (``Sam2VideoMemoryAttentionLayer`` passes ``kv_in_dim=64``, whatever the config says).
TRANSFORMERS_MEMORY_WIDTH = 64


def _get(model: Any, dotted: str) -> Any:
    value: Any = model
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def unsupported(model: Any) -> list[str]:
    """Settings of ``model`` (a ``SAM2Base``) that transformers' ``Sam2VideoModel`` cannot express.

    Each entry reads ``name = value (transformers: needed)``; an empty list means the model converts.
    """
    problems = [
        f"{name} = {_get(model, name)!r} (transformers: {needed!r})"
        for name, needed in FIXED_SETTINGS
        if _get(model, name) != needed
    ]
    if _get(model, "add_tpos_enc_to_obj_ptrs"):
        # transformers projects a signed temporal encoding of the full width whenever it encodes time.
        problems += [
            f"{name} = {_get(model, name)!r} with add_tpos_enc_to_obj_ptrs = True (transformers: True)"
            for name in ("proj_tpos_enc_in_obj_ptrs", "use_signed_tpos_enc_to_obj_ptrs")
            if _get(model, name) is not True
        ]
    layers = list(_get(model, "memory_attention.layers") or [])
    heads = {(layer.self_attn.num_heads, layer.cross_attn_image.num_heads) for layer in layers}
    if len({h for pair in heads for h in pair}) > 1:
        problems.append("memory attention layers with different head counts (transformers: one count)")
    # A memory width other than 64 has no transformers counterpart: the memory attention would
    # read the wrong width, and sam2 splits each object pointer into hidden / width tokens, which
    # no padding of the weights reproduces.
    for index, layer in enumerate(layers):
        width = layer.cross_attn_image.k_proj.in_features
        if width != TRANSFORMERS_MEMORY_WIDTH:
            problems.append(
                f"memory_attention.layers.{index}.cross_attention.kv_in_dim = {width} "
                f"(transformers: {TRANSFORMERS_MEMORY_WIDTH}, fixed in Sam2VideoMemoryAttentionLayer)"
            )
            break
    if _get(model, "mem_dim") == _get(model, "hidden_dim"):
        # transformers splits object pointers into memory-wide tokens and only reshapes them to a
        # sequence when it splits; unsplit pointers fail in torch.cat inside its memory attention.
        problems.append(
            f"memory width = hidden width = {_get(model, 'hidden_dim')} "
            "(transformers: narrower memory, object pointers split into tokens)"
        )
    encoder = _get(model, "memory_encoder")
    if encoder is not _MISSING:
        if not isinstance(encoder.fuser.proj, nn.Identity):
            problems.append("memory_encoder.fuser input projection (transformers: none)")
        if encoder.position_encoding.num_pos_feats * 2 != model.mem_dim:
            problems.append("memory_encoder.position_encoding.num_pos_feats != memory_encoder.out_dim")
    return problems


def hf_config(model: Any, image_size: int) -> dict[str, Any]:
    """The ``Sam2VideoConfig`` keyword arguments of ``model`` (a ``SAM2Base``) at ``image_size``.

    Every field is read off the built modules, so whatever sam2tool builds (any size, either
    version, any image size) is described as it is; :func:`unsupported` lists what cannot be.
    """
    size = image_size
    trunk = model.image_encoder.trunk
    neck = model.image_encoder.neck
    stage_ends = list(trunk.stage_ends)
    patch = trunk.patch_embed.proj
    q_stride = list(trunk.q_stride)
    backbone = {
        "hidden_size": trunk.blocks[0].dim,
        "num_attention_heads": trunk.blocks[0].attn.num_heads,
        "image_size": [size, size],
        "patch_kernel_size": list(patch.kernel_size),
        "patch_stride": list(patch.stride),
        "patch_padding": list(patch.padding),
        "query_stride": q_stride,
        "window_positional_embedding_background_size": list(trunk.window_pos_embed_bkg_spatial_size),
        "num_query_pool_stages": len(trunk.q_pool_blocks),
        "blocks_per_stage": [end - start for start, end in zip([-1, *stage_ends[:-1]], stage_ends, strict=True)],
        "embed_dim_per_stage": [trunk.blocks[end].dim_out for end in stage_ends],
        "num_attention_heads_per_stage": [trunk.blocks[end].attn.num_heads for end in stage_ends],
        "window_size_per_stage": [int(w) for w in trunk.window_spec],
        "global_attention_blocks": [int(b) for b in trunk.global_att_blocks],
        "mlp_ratio": trunk.blocks[0].mlp.layers[0].out_features / trunk.blocks[0].dim,
    }
    stride = patch.stride[0]
    levels = int(model.num_feature_levels)
    feature_sizes = [[size // (stride * q_stride[0] ** level)] * 2 for level in range(levels)]
    conv = neck.convs[0].conv
    vision = {
        "backbone_config": {"model_type": "sam2_hiera_det_model", **backbone},
        "backbone_channel_list": list(neck.backbone_channel_list),
        "backbone_feature_sizes": feature_sizes,
        "fpn_hidden_size": neck.d_model,
        "fpn_kernel_size": conv.kernel_size[0],
        "fpn_stride": conv.stride[0],
        "fpn_padding": conv.padding[0],
        "fpn_top_down_levels": list(neck.fpn_top_down_levels),
        "num_feature_levels": levels,
        "model_type": "sam2_vision_model",
    }
    prompt = model.sam_prompt_encoder
    prompt_encoder = {
        "hidden_size": prompt.embed_dim,
        "image_size": size,
        "patch_size": size // prompt.image_embedding_size[0],
        "mask_input_channels": prompt.mask_downscaling[3].out_channels,
        "num_point_embeddings": len(prompt.point_embeddings),
    }
    decoder = model.sam_mask_decoder
    two_way = decoder.transformer
    mask_decoder = {
        "hidden_size": decoder.transformer_dim,
        "mlp_dim": two_way.mlp_dim,
        "num_hidden_layers": two_way.depth,
        "num_attention_heads": two_way.num_heads,
        "attention_downsample_rate": two_way.embedding_dim // two_way.final_attn_token_to_image.internal_dim,
        "num_multimask_outputs": decoder.num_multimask_outputs,
        "iou_head_depth": len(decoder.iou_prediction_head.layers),
        "iou_head_hidden_dim": decoder.iou_prediction_head.layers[0].out_features,
        "dynamic_multimask_via_stability": bool(decoder.dynamic_multimask_via_stability),
        "dynamic_multimask_stability_delta": float(decoder.dynamic_multimask_stability_delta),
        "dynamic_multimask_stability_thresh": float(decoder.dynamic_multimask_stability_thresh),
    }
    attention = model.memory_attention
    layer = attention.layers[0]
    rope_grid = size // (stride * q_stride[0] ** (levels - 1))
    encoder = model.memory_encoder
    downsampler = [m for m in encoder.mask_downsampler.encoder if isinstance(m, nn.Conv2d)]
    fuser = encoder.fuser.layers[0]
    return {
        "vision_config": vision,
        "prompt_encoder_config": prompt_encoder,
        "mask_decoder_config": mask_decoder,
        "num_maskmem": int(model.num_maskmem),
        "image_size": size,
        "sigmoid_scale_for_mem_enc": float(model.sigmoid_scale_for_mem_enc),
        "sigmoid_bias_for_mem_enc": float(model.sigmoid_bias_for_mem_enc),
        "enable_occlusion_spatial_embedding": model.no_obj_embed_spatial is not None,
        "multimask_output_in_sam": bool(model.multimask_output_in_sam),
        "multimask_min_pt_num": int(model.multimask_min_pt_num),
        "multimask_max_pt_num": int(model.multimask_max_pt_num),
        "multimask_output_for_tracking": bool(model.multimask_output_for_tracking),
        "max_object_pointers_in_encoder": int(model.max_obj_ptrs_in_encoder),
        "max_cond_frame_num": int(model.max_cond_frames_in_attn),
        "enable_temporal_pos_encoding_for_object_pointers": bool(model.add_tpos_enc_to_obj_ptrs),
        "memory_attention_hidden_size": attention.d_model,
        "memory_attention_num_layers": attention.num_layers,
        "memory_attention_num_attention_heads": layer.self_attn.num_heads,
        "memory_attention_downsample_rate": layer.self_attn.embedding_dim // layer.self_attn.internal_dim,
        "memory_attention_feed_forward_hidden_size": layer.dim_feedforward,
        "memory_attention_feed_forward_hidden_act": layer.activation_str,
        "memory_attention_dropout": float(layer.dropout_value),
        "memory_attention_rope_feat_sizes": [rope_grid, rope_grid],
        "memory_attention_rope_dropout": float(layer.self_attn.dropout_p),
        "memory_encoder_hidden_size": encoder.pix_feat_proj.in_channels,
        "memory_encoder_output_channels": int(model.mem_dim),
        "mask_downsampler_embed_dim": downsampler[-1].out_channels,
        "mask_downsampler_kernel_size": downsampler[0].kernel_size[0],
        "mask_downsampler_stride": downsampler[0].stride[0],
        "mask_downsampler_padding": downsampler[0].padding[0],
        "mask_downsampler_total_stride": downsampler[0].stride[0] ** (len(downsampler) - 1),
        "memory_fuser_num_layers": len(encoder.fuser.layers),
        "memory_fuser_embed_dim": fuser.dwconv.in_channels,
        "memory_fuser_intermediate_dim": fuser.pwconv1.out_features,
        "memory_fuser_kernel_size": fuser.dwconv.kernel_size[0],
        "memory_fuser_padding": fuser.dwconv.padding[0],
    }


def processor_sizes(image_size: int, mask_stride: int = 4) -> dict[str, dict[str, int]]:
    """The processor's ``size`` (model input) and ``mask_size`` (mask prompts: the low-res logits)."""
    low = image_size // mask_stride
    return {"size": {"height": image_size, "width": image_size}, "mask_size": {"height": low, "width": low}}


def require_transformers() -> str:
    """The installed transformers version, if it has SAM 2 video (>= 4.56).

    Raises:
        UsageError: transformers is missing or older (one line naming the install command).

    """
    try:
        version = importlib.metadata.version("transformers")
        import transformers

        transformers.Sam2VideoModel  # noqa: B018  (missing before 4.56)
    except (importlib.metadata.PackageNotFoundError, ImportError, AttributeError):
        found = _installed_version()
        what = "is not installed" if found is None else f"{found} has no Sam2VideoModel (needs >= {MIN_TRANSFORMERS})"
        raise UsageError(
            f"--format hf needs transformers >= {MIN_TRANSFORMERS}, which {what}: {INSTALL_HINT}"
        ) from None
    return version


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return None


def hf_tracker(built: Any) -> Any:
    """sam2's video predictor (as ``predict-video`` builds it) with the weights of ``built``, float32, eval.

    Args:
        built: The ``BuiltModel`` being exported (``SAM2Base`` with the weights to export).

    Raises:
        UsageError: The model has a setting transformers' ``Sam2VideoModel`` lacks (each one named);
            nothing has been written yet.

    """
    from sam2tool.models.build import (
        STREAMING_PREDICTOR,
        VIDEO_PREDICTOR_OVERRIDES,
        compose_model_config,
        instantiate_model,
    )

    overrides = [f"++model._target_={STREAMING_PREDICTOR}", *VIDEO_PREDICTOR_OVERRIDES]
    tracker = instantiate_model(compose_model_config(built.spec, built.image_size, extra_overrides=overrides))
    tracker.load_state_dict(built.model.state_dict())
    tracker = tracker.float().eval()
    problems = unsupported(tracker)
    if problems:
        raise UsageError(
            f"--format hf: {built.spec.display_name} cannot be expressed by transformers' Sam2VideoModel: "
            + "; ".join(problems)
        )
    return tracker


def build_processor(image_size: int) -> Any:
    """A ``Sam2VideoProcessor`` for inputs of ``image_size`` (ImageNet statistics, bilinear resize)."""
    transformers: Any = importlib.import_module("transformers")

    sizes = processor_sizes(image_size)
    # 4.56 names the image processor Sam2ImageProcessorFast; 5.x Sam2ImageProcessor (the old name warns).
    image_class = getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    return transformers.Sam2VideoProcessor(
        image_processor=image_class(**sizes),
        video_processor=transformers.Sam2VideoVideoProcessor(size=sizes["size"]),
    )


def build_hf_model(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> Any:
    """A ``Sam2VideoModel`` with ``config`` (:func:`hf_config`) and sam2's ``state`` (strict load).

    Raises:
        ExportError: A weight is missing, left over or of another shape.

    """
    transformers: Any = importlib.import_module("transformers")

    model = transformers.Sam2VideoModel(transformers.Sam2VideoConfig(**config))
    mapped = hf_state_dict(state)
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise ExportError(f"the weights do not fit transformers' Sam2VideoModel: {exc}") from None
    return model.eval()


@dataclass
class ProbeReport:
    """How transformers' export and sam2's video predictor agreed on the probe video.

    Attributes:
        frames: Frames tracked.
        objects: Objects tracked.
        agreement: Per frame, the smallest share of equal pixels over the objects' binary masks.
        max_abs_diff: Largest |difference| of the mask logits at video resolution (clipped to +-32).
        threshold: Smallest accepted agreement.

    """

    frames: int
    objects: int
    agreement: list[float] = field(default_factory=list)
    max_abs_diff: float = 0.0
    threshold: float = DEFAULT_AGREEMENT

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data for the model card."""
        return {
            "frames": self.frames,
            "objects": self.objects,
            "min_agreement": min(self.agreement),
            "agreement_per_frame": [round(value, 6) for value in self.agreement],
            "max_abs_logit_diff": self.max_abs_diff,
            "threshold": self.threshold,
        }


def probe_video(image_size: int, frames: int = 3, seed: int = 0) -> tuple[list[np.ndarray], dict[int, list[float]]]:
    """A short synthetic video (textured background, three moving shapes) and a click on each shape."""
    rng = np.random.default_rng(seed)
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size]
    background = rng.integers(30, 90, (1, 1, 3)) + 12 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 11.0)[..., None]
    video = []
    for t in range(frames):
        image = np.broadcast_to(background, (size, size, 3)).copy()
        shift = t * size / 40
        image[(xx - 0.3 * size - shift) ** 2 + (yy - 0.5 * size) ** 2 < (0.14 * size) ** 2] = (220, 80, 60)
        image[(abs(xx - 0.72 * size) < 0.1 * size) & (abs(yy - 0.28 * size - shift) < 0.1 * size)] = (60, 200, 90)
        image[(abs(xx - 0.6 * size + shift) < 0.2 * size) & (abs(yy - 0.82 * size) < 0.06 * size)] = (70, 90, 230)
        video.append(np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8))
    clicks = {1: [0.3 * size, 0.5 * size], 2: [0.72 * size, 0.28 * size], 3: [0.6 * size, 0.82 * size]}
    return video, clicks


class _ArrayFrames:
    """In-memory RGB frames as the frame source of sam2tool's streaming predictor."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, index: int) -> Any:
        from PIL import Image

        return Image.fromarray(self.frames[index])


#: A prompt on the first frame of a probe: a click ``(x, y)`` or a boolean mask ``[H, W]``.
ProbePrompt = Sequence[float] | np.ndarray


def _is_mask(prompt: ProbePrompt) -> bool:
    return isinstance(prompt, np.ndarray) and prompt.ndim == 2


def track_with_sam2(tracker: Any, frames: Sequence[np.ndarray], prompts: Mapping[int, ProbePrompt]) -> list[np.ndarray]:
    """Mask logits ``[objects, H, W]`` per frame from sam2tool's predictor (what ``predict-video`` runs)."""
    state = tracker.init_state(_ArrayFrames(frames))
    for obj_id, prompt in prompts.items():
        if _is_mask(prompt):
            tracker.add_new_mask(state, frame_idx=0, obj_id=obj_id, mask=np.asarray(prompt, dtype=bool))
        else:
            x, y = prompt
            points, labels = np.array([[x, y]], np.float32), np.array([1], np.int32)
            tracker.add_new_points_or_box(state, frame_idx=0, obj_id=obj_id, points=points, labels=labels)
    out: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for frame_idx, _, logits in tracker.propagate_in_video(state):
            out[frame_idx] = logits[:, 0].float().cpu().numpy()
    return [out[t] for t in range(len(frames))]


def track_with_transformers(
    model: Any, processor: Any, frames: Sequence[np.ndarray], prompts: Mapping[int, ProbePrompt]
) -> list[np.ndarray]:
    """Mask logits ``[objects, H, W]`` per frame from transformers' video API (the card's usage)."""
    height, width = frames[0].shape[:2]
    session = processor.init_video_session(video=list(frames), inference_device="cpu")
    # One call for the masks and one for the clicks (transformers takes one kind per call, and empties
    # the obj_ids list it is given); one call per object would fail on the second object's frame.
    masked = [obj_id for obj_id, prompt in prompts.items() if _is_mask(prompt)]
    clicked = [obj_id for obj_id in prompts if obj_id not in masked]
    if masked:
        processor.add_inputs_to_inference_session(
            inference_session=session,
            frame_idx=0,
            obj_ids=list(masked),
            input_masks=[np.asarray(prompts[i], dtype=bool) for i in masked],
        )
    if clicked:
        processor.add_inputs_to_inference_session(
            inference_session=session,
            frame_idx=0,
            obj_ids=list(clicked),
            input_points=[[[list(prompts[i])] for i in clicked]],
            input_labels=[[[1] for _ in clicked]],
        )
    out: dict[int, np.ndarray] = {}
    model(inference_session=session, frame_idx=0)
    for output in model.propagate_in_video_iterator(session):
        masks = processor.post_process_masks([output.pred_masks], original_sizes=[[height, width]], binarize=False)[0]
        out[output.frame_idx] = masks[:, 0].float().cpu().numpy()
    return [out[t] for t in range(len(frames))]


def compare_tracks(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray], threshold: float) -> ProbeReport:
    """Per-frame agreement of the binary masks (the worst object counts) and the largest logit difference."""
    report = ProbeReport(frames=len(ours), objects=int(ours[0].shape[0]), threshold=threshold)
    for mine, other in zip(ours, theirs, strict=True):
        if mine.shape != other.shape:
            raise ExportError(f"transformers returned masks of shape {other.shape}, sam2 {mine.shape}")
        report.agreement.append(float(min(((mine[i] > 0) == (other[i] > 0)).mean() for i in range(len(mine)))))
        diff = np.abs(np.clip(mine, -32, 32) - np.clip(other, -32, 32)).max()
        report.max_abs_diff = max(report.max_abs_diff, float(diff))
    return report


def write_hf(
    tracker: Any, image_size: int, folder: Path, dtype: torch.dtype, threshold: float = DEFAULT_AGREEMENT
) -> ProbeReport:
    """Write ``folder`` (``save_pretrained`` of the model and processor), reload it and check it.

    Args:
        tracker: sam2's video predictor (``VIDEO_PREDICTOR_OVERRIDES``) with the weights to export,
            float32, eval mode; :func:`unsupported` must be empty for it.
        image_size: Its input size.
        folder: The folder to create (``hf/`` of the staging folder).
        dtype: Dtype of ``model.safetensors`` (the check runs in float32 on these weights).
        threshold: Smallest share of equal pixels per frame and object on the probe.

    Raises:
        ExportError: Writing failed, or the reloaded model does not track like ``tracker``.

    """
    transformers: Any = importlib.import_module("transformers")

    config = hf_config(tracker, image_size)
    model = build_hf_model(config, tracker.state_dict()).to(dtype)
    processor = build_processor(image_size)
    folder.mkdir()
    with _no_progress_bars():
        model.save_pretrained(str(folder), safe_serialization=True)
        processor.save_pretrained(str(folder))
        del model
        loaded = transformers.Sam2VideoModel.from_pretrained(str(folder)).float().eval()
        loaded_processor = transformers.Sam2VideoProcessor.from_pretrained(str(folder))
    _check_loaded_config(loaded.config, config)
    reference = {key: value.to(dtype).float() for key, value in tracker.state_dict().items()}
    saved = dict(tracker.state_dict())
    tracker.load_state_dict(reference)  # the check compares the weights as written
    try:
        frames, clicks = probe_video(image_size)
        report = compare_tracks(
            track_with_sam2(tracker, frames, clicks),
            track_with_transformers(loaded, loaded_processor, frames, clicks),
            threshold,
        )
    finally:
        tracker.load_state_dict(saved)
    if min(report.agreement) < threshold:
        worst = int(np.argmin(report.agreement))
        raise ExportError(
            f"{folder.name}/ loaded by transformers {transformers.__version__} tracks differently from sam2: "
            f"frame {worst} of the probe video has {100 * report.agreement[worst]:.3f} % equal mask pixels "
            f"(at least {100 * threshold:g} % expected; logits differ by up to {report.max_abs_diff:.3g})"
        )
    return report


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Turn transformers' shard and weight-loading bars off inside the block (sam2tool shows its own status)."""
    hf_logging: Any = importlib.import_module("transformers.utils.logging")

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _check_loaded_config(loaded: Any, expected: Mapping[str, Any]) -> None:
    """The size-dependent fields came back from ``config.json`` as written."""
    checks: dict[str, tuple[Any, Any]] = {
        "image_size": (loaded.image_size, expected["image_size"]),
        "prompt_encoder_config.image_size": (loaded.prompt_encoder_config.image_size, expected["image_size"]),
        "vision_config.backbone_feature_sizes": (
            [list(s) for s in loaded.vision_config.backbone_feature_sizes],
            expected["vision_config"]["backbone_feature_sizes"],
        ),
        "memory_attention_rope_feat_sizes": (
            list(loaded.memory_attention_rope_feat_sizes),
            expected["memory_attention_rope_feat_sizes"],
        ),
    }
    for name, (found, wanted) in checks.items():
        if found != wanted:
            raise ExportError(f"{HF_FOLDER}/config.json: {name} reads back as {found}, written {wanted}")


def hf_files(folder: Path, entry: Callable[[Path], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``hf/<name>`` -> ``entry(path)`` for every file ``save_pretrained`` wrote."""
    return {f"{HF_FOLDER}/{path.name}": entry(path) for path in sorted(folder.iterdir()) if path.is_file()}


def hf_card(version: str, config: Mapping[str, Any], report: ProbeReport, image_size: int) -> dict[str, Any]:
    """The model card's ``hf`` section: the transformers version it was checked with, sizes, the probe."""
    return {
        "transformers_version": version,
        "min_transformers": MIN_TRANSFORMERS,
        "classes": ["Sam2VideoModel", "Sam2VideoProcessor"],
        "image_size": image_size,
        "backbone_feature_sizes": config["vision_config"]["backbone_feature_sizes"],
        "memory_attention_rope_feat_sizes": config["memory_attention_rope_feat_sizes"],
        "processor": processor_sizes(image_size),
        "check": report.to_json(),
        "not_ported": "hole filling of small mask holes (sam2's optional CUDA extension; skipped without it)",
    }
