"""Build SAM 2 models from settings: the one place that composes sam2's Hydra configs.

``import sam2`` initialises Hydra on the sam2 package's config module; this module only calls
``hydra.compose`` on config names such as ``configs/sam2.1/sam2.1_hiera_t.yaml`` and never
initialises Hydra itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sam2tool.config.problems import ConfigError
from sam2tool.config.registry import COMPONENTS, ModelSpec, get_spec
from sam2tool.config.schema import ModelSettings
from sam2tool.errors import CheckpointError
from sam2tool.models.checkpoints import load_into, read_state_dict
from sam2tool.models.download import resolve_checkpoint

log = logging.getLogger(__name__)

#: Class of the plain SAM 2 model (training, export).
SAM2_BASE = "sam2.modeling.sam2_base.SAM2Base"
#: Class of sam2tool's streaming video predictor.
STREAMING_PREDICTOR = "sam2tool.models.streaming.StreamingVideoPredictor"
#: The settings ``sam2.build_sam.build_sam2_video_predictor`` gives the model (``SAM2Base``) for
#: tracking; the ONNX tracking graphs are exported from a model built with them.
TRACKING_OVERRIDES: tuple[str, ...] = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
)
#: Those and the predictor's post-processing, so that predictions equal the official predictor's.
VIDEO_PREDICTOR_OVERRIDES: tuple[str, ...] = (*TRACKING_OVERRIDES, "++model.fill_hole_area=8")


@dataclass
class BuiltModel:
    """A SAM 2 model and what it was built from.

    Attributes:
        model: The ``torch.nn.Module`` (``SAM2Base`` or the requested target class), on the CPU.
        spec: Registry row (version, size, Hydra config name).
        image_size: Input resolution the model was built for.
        config: The resolved Hydra model config as plain data (what an export must ship).
        checkpoint: File the weights came from, or None for random weights.
        trainable_parameters: Parameters with ``requires_grad`` after freezing.
        total_parameters: All parameters.

    """

    model: torch.nn.Module
    spec: ModelSpec
    image_size: int
    config: dict[str, Any]
    checkpoint: Path | None
    trainable_parameters: int
    total_parameters: int


def model_overrides(spec: ModelSpec, image_size: int, drop_path_rate: float = 0.0) -> list[str]:
    """Hydra overrides that turn a registry row into the model to build.

    The memory-attention RoPE ``feat_sizes`` must equal the image-embedding grid (image_size / 16)
    or attention fails at any size other than the configs' 1024.
    """
    grid = image_size // 16
    overrides = [
        *spec.overrides,
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{grid},{grid}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{grid},{grid}]",
    ]
    if drop_path_rate:
        overrides.append(f"++model.image_encoder.trunk.drop_path_rate={drop_path_rate}")
    return overrides


def compose_model_config(
    spec: ModelSpec, image_size: int, *, drop_path_rate: float = 0.0, extra_overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Return the resolved Hydra config of the model (the ``model:`` node and its siblings)."""
    import sam2  # noqa: F401  (initialises Hydra on sam2's config module)
    from hydra import compose
    from omegaconf import OmegaConf

    overrides = [*model_overrides(spec, image_size, drop_path_rate), *extra_overrides]
    cfg = compose(config_name=spec.config_name, overrides=overrides)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return {str(key): value for key, value in container.items()}


def instantiate_model(config: dict[str, Any]) -> torch.nn.Module:
    """Instantiate ``config["model"]`` with Hydra (random weights)."""
    from hydra.utils import instantiate

    model = instantiate(config["model"], _recursive_=True)
    assert isinstance(model, torch.nn.Module)
    return model


def build_model(
    settings: ModelSettings,
    image_size: int,
    *,
    target: str | None = None,
    extra_overrides: Sequence[str] = (),
    load_weights: bool = True,
    progress: bool = True,
) -> BuiltModel:
    """Build the model ``settings`` describe at ``image_size``, load its weights, freeze parts.

    Args:
        settings: The ``model`` section.
        image_size: Input resolution (a multiple of 32).
        target: Class to instantiate instead of ``SAM2Base`` (e.g. a video predictor class).
        extra_overrides: More Hydra overrides.
        load_weights: Load ``model.checkpoint`` (downloading official weights if needed).
        progress: Show a download progress bar.

    Raises:
        CheckpointError: The checkpoint is unreadable, unsafe or for another model.
        DownloadError: An official checkpoint could not be downloaded.
        ConfigError: ``model.trainable_modules`` names nothing in this model.

    """
    spec = get_spec(settings.version, settings.size)
    overrides = list(extra_overrides)
    if target is not None:
        overrides.insert(0, f"++model._target_={target}")
    config = compose_model_config(spec, image_size, drop_path_rate=settings.drop_path_rate, extra_overrides=overrides)
    model = instantiate_model(config)
    checkpoint = resolve_checkpoint(settings, progress=progress) if load_weights else None
    if checkpoint is not None:
        load_into(model, read_state_dict(checkpoint), checkpoint, spec)
        log.info("Loaded %s weights from %s", spec.display_name, checkpoint)
    else:
        log.info("Built %s with random weights", spec.display_name)
    trainable, total = apply_trainable_modules(model, settings.trainable_modules)
    return BuiltModel(model, spec, image_size, config, checkpoint, trainable, total)


def build_video_predictor(
    settings: ModelSettings, image_size: int, *, device: str | torch.device = "cpu", progress: bool = True
) -> BuiltModel:
    """Build the streaming video predictor for ``settings`` in eval mode on ``device``."""
    built = build_model(
        settings, image_size, target=STREAMING_PREDICTOR, extra_overrides=VIDEO_PREDICTOR_OVERRIDES, progress=progress
    )
    built.model.to(device).eval()
    return built


def apply_trainable_modules(model: torch.nn.Module, modules: Sequence[str]) -> tuple[int, int]:
    """Freeze every parameter not under one of ``modules`` (``"all"`` trains everything).

    Entries are parameter-name prefixes (``image_encoder.trunk`` matches
    ``image_encoder.trunk.blocks.0.attn.qkv.weight``).

    Returns:
        ``(trainable, total)`` parameter counts, also logged.

    Raises:
        ConfigError: An entry matches no parameter of this model.

    """
    names = [name for name, _ in model.named_parameters()]
    unmatched = [entry for entry in modules if entry != "all" and not any(_under(name, entry) for name in names)]
    if unmatched:
        present = [c for c in COMPONENTS if any(_under(name, c) for name in names)]
        raise ConfigError.single(
            "model.trainable_modules",
            f"{', '.join(map(repr, unmatched))} match no parameter of this model; "
            f"its components are: {', '.join(present)}",
            value=list(modules),
        )
    train_all = "all" in modules
    trainable = total = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(train_all or any(_under(name, entry) for entry in modules))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    log.info(
        "Trainable parameters: %s of %s (%.1f%%)", f"{trainable:,}", f"{total:,}", 100.0 * trainable / max(total, 1)
    )
    return trainable, total


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def build_with_official_loader(config_file: Path, weights: Path, *, video: bool = False) -> torch.nn.Module:
    """Load an exported ``model.yaml`` + ``model.pt`` exactly as a user of Meta's ``sam2`` package would.

    Calls ``sam2.build_sam.build_sam2`` (or ``build_sam2_video_predictor`` with ``video``) on the
    CPU with ``"/" + absolute path`` as the config name, which makes Hydra read a file outside the
    sam2 package. Loading is strict (sam2 raises on any missing or unexpected key).

    Raises:
        CheckpointError: sam2 could not build the model or load the weights.

    """
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    builder = build_sam2_video_predictor if video else build_sam2
    name = "/" + str(Path(config_file).resolve())
    try:
        model = builder(name, str(weights), device="cpu", mode="eval")
    except Exception as exc:  # sam2 raises a bare RuntimeError() after logging the keys
        raise CheckpointError(
            f"the official sam2 builder could not load {weights} with {config_file}: {exc!r}"
        ) from exc
    assert isinstance(model, torch.nn.Module)
    return model
