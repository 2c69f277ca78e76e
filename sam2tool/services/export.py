"""``sam2tool export``: turn a training checkpoint into files other programs load.

The export folder holds, depending on ``--format``:

- ``model.pt`` + ``model.yaml`` (``sam2``): Meta's ``{"model": state_dict}`` and the resolved model
  config, checked by loading them with the official ``sam2.build_sam.build_sam2`` (strict);
- ``model.safetensors``: the same weights in the safetensors format, checked by reading them back;
- ``image_encoder.onnx`` + ``mask_decoder.onnx`` (images), ``memory_attention.onnx``,
  ``memory_encoder.onnx``, ``video_decoder.onnx``, ``mask_prompt.onnx`` (video tracking) and
  ``onnx_manifest.json``: each graph checked with onnxruntime against PyTorch;
- ``hf/`` (``hf``): a transformers ``Sam2VideoModel`` + ``Sam2VideoProcessor``, checked by loading it
  with ``from_pretrained`` and tracking a probe video with transformers and with sam2;
- ``model_card.json``: base model, data, training config, last validation metrics, files, checks.

LoRA adapters are merged into the weights (``W + alpha/r * B @ A``); optimizer state and
everything else of the training checkpoint is left out. The folder is written to a temporary
sibling and renamed into place when every file is written and checked.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sam2tool import __version__
from sam2tool.atomic import atomic_folder, check_replaceable
from sam2tool.config.choices import ExportDtype
from sam2tool.config.loading import load_settings
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.config.sources import override_keys
from sam2tool.data.layout import manifest_fingerprint
from sam2tool.errors import ExportError, UsageError
from sam2tool.export.hf_export import HF_FOLDER, hf_tracker
from sam2tool.export.hf_export import USAGE as HF_USAGE
from sam2tool.export.weights import (
    DTYPES,
    SAFETENSORS_WEIGHTS,
    SAM2_CONFIG,
    SAM2_WEIGHTS,
    cast_state_dict,
    file_entry,
    write_json,
    write_safetensors,
    write_sam2,
)
from sam2tool.metrics.statistics import finite
from sam2tool.models.checkpoints import MODEL_CARD, checkpoint_settings, earlier_card, read_state_dict
from sam2tool.models.onnx_bundle import MANIFEST_FILE as ONNX_MANIFEST

log = logging.getLogger(__name__)

#: ``--format`` values, in the order they are written.
FORMATS = ("sam2", "safetensors", "onnx", "hf")
#: How the exported files are loaded, for the model card and the README.
USAGE = {
    "sam2": (
        "import os; from sam2.build_sam import build_sam2_video_predictor; "
        "predictor = build_sam2_video_predictor('/' + os.path.abspath('model.yaml'), 'model.pt')"
    ),
    "safetensors": "from safetensors.torch import load_file; model.load_state_dict(load_file('model.safetensors'))",
    "onnx": "sam2tool predict-video FRAMES -o MASKS --checkpoint DIR --backend onnxruntime --point X,Y; "
    "images: onnxruntime.InferenceSession('image_encoder.onnx'), onnxruntime.InferenceSession('mask_decoder.onnx')",
    "hf": HF_USAGE,
}


@dataclass
class ExportResult:
    """What ``export`` wrote.

    Attributes:
        output: The export folder.
        files: File name -> ``{"bytes", "sha256"}``.
        card: The model card (also in ``model_card.json``).
        checks: One line per check that passed.

    """

    output: Path
    files: dict[str, dict[str, Any]]
    card: dict[str, Any]
    checks: list[str] = field(default_factory=list)


def parse_formats(text: str) -> list[str]:
    """``"sam2,onnx"`` -> ``["sam2", "onnx"]`` in the canonical order.

    Raises:
        UsageError: A format is unknown, or none is given.

    """
    asked = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in asked if name not in FORMATS]
    if unknown or not asked:
        raise UsageError(
            f"--format {text!r}: {'unknown format ' + ', '.join(unknown) if unknown else 'no format given'}; "
            f"choose from {','.join(FORMATS)} (comma-separated)"
        )
    return [name for name in FORMATS if name in asked]


def export_settings(
    checkpoint: Path, config: Path | None = None, image_size: int | None = None, overrides: Sequence[str] = ()
) -> tuple[Sam2ToolSettings, dict[str, Any] | None]:
    """The settings a checkpoint was trained with, and its sam2tool metadata.

    A sam2tool training checkpoint carries its settings, and an exported ``model.pt`` has them in
    its model card. Any other checkpoint (Meta's) needs ``config`` to say which model it holds.
    ``key.path=value`` ``overrides`` go on top of either.

    Raises:
        UsageError: The checkpoint has no settings and no config was given.

    """
    trained, meta = checkpoint_settings(checkpoint)
    flags: dict[str, Any] = {}
    if trained is not None:
        if config is not None:
            log.warning("%s carries the settings it was trained with; --config %s is not used", checkpoint, config)
        given = override_keys(overrides)  # they win over what the checkpoint says
        flags, config = {key: value for key, value in trained.items() if key not in given}, None
    elif config is None:
        raise UsageError(
            f"{checkpoint} is not a sam2tool training checkpoint, so it does not say which model it holds; "
            "pass --config with a config whose model section (size, version) and dataset.image_size match it"
        )
    if image_size is not None:
        flags["dataset.image_size"] = image_size
    flags["model.checkpoint"] = str(checkpoint)
    settings = load_settings(config, overrides, flags, environment=False)
    return settings, meta


def export_model(
    checkpoint: Path,
    output: Path,
    *,
    formats: Sequence[str] = ("sam2",),
    dtype: ExportDtype = "fp32",
    config: Path | None = None,
    image_size: int | None = None,
    overrides: Sequence[str] = (),
    force: bool = False,
    onnx_tolerance: float | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` into the folder ``output``.

    Args:
        checkpoint: A sam2tool training checkpoint (or, with ``config``, any SAM 2 checkpoint).
        output: Folder to create (replaced only with ``force``, and only an earlier export).
        formats: Any of ``sam2``, ``safetensors``, ``onnx``, ``hf``.
        dtype: Dtype of the weight files (ONNX graphs are always float32).
        config: Settings for a checkpoint that does not carry them.
        image_size: Input size of the exported model (default: the one it was trained at).
        overrides: ``key.path=value`` settings on top of the checkpoint's (or ``config``'s).
        force: Replace an existing export folder.
        onnx_tolerance: Largest accepted difference between onnxruntime and PyTorch outputs.
        on_stage: Called with a short description before each stage (progress).

    Raises:
        UsageError: Bad arguments (unknown format, existing output, missing config), ``hf`` without
            transformers, or a model transformers cannot express.
        CheckpointError: The checkpoint does not load into the model.
        ExportError: A file could not be written or failed its check.

    """
    from sam2tool.models.build import TRACKING_OVERRIDES, build_model, build_with_official_loader

    stage = on_stage or (lambda text: None)
    formats = [name for name in FORMATS if name in formats]
    if not formats:
        raise UsageError(f"no format to export; choose from {','.join(FORMATS)}")
    hf_version = _require_hf() if "hf" in formats else None
    check_replaceable(output, force, marker=MODEL_CARD, writer="sam2tool export")
    stage("Loading the checkpoint")
    settings, meta = export_settings(checkpoint, config, image_size, overrides)
    model_settings = settings.model.model_copy(update={"trainable_modules": ["all"], "lora_targets": []})
    built = build_model(model_settings, settings.dataset.image_size, progress=False)
    model = built.model.float().eval()
    state = cast_state_dict(model.state_dict(), dtype)
    tracker = hf_tracker(built) if hf_version is not None else None  # refuses what transformers lacks
    checks: list[str] = []
    onnx_report: dict[str, Any] | None = None
    hf_report: dict[str, Any] | None = None
    header = (
        f"{built.spec.display_name} at {built.image_size} px, exported by sam2tool {__version__} from {checkpoint}.\n"
        "Load it with the official sam2 package (the leading '/' makes Hydra read this file):\n"
        f"  {USAGE['sam2']}"
    )
    with atomic_folder(output) as staging:
        staging.mkdir()
        if "sam2" in formats:
            stage("Writing model.pt + model.yaml")
            write_sam2(state, built.config, staging, header)
            loaded = build_with_official_loader(staging / SAM2_CONFIG, staging / SAM2_WEIGHTS)
            _check_equal(loaded.state_dict(), state, f"{SAM2_WEIGHTS} loaded by sam2.build_sam.build_sam2")
            checks.append(f"{SAM2_WEIGHTS} + {SAM2_CONFIG}: build_sam2 (official) loads them strictly, weights equal")
            del loaded
        if "safetensors" in formats:
            stage("Writing model.safetensors")
            metadata = {"format": "pt", "sam2tool_version": __version__, "model": built.spec.display_name}
            write_safetensors(state, staging, {**metadata, "image_size": str(built.image_size), "dtype": dtype})
            _check_equal(read_state_dict(staging / SAFETENSORS_WEIGHTS), state, SAFETENSORS_WEIGHTS)
            checks.append(f"{SAFETENSORS_WEIGHTS}: read back, weights equal")
        if "onnx" in formats:
            from sam2tool.export.onnx_export import DEFAULT_TOLERANCE, export_onnx

            stage("Exporting and checking the ONNX graphs")
            tolerance = DEFAULT_TOLERANCE if onnx_tolerance is None else onnx_tolerance
            # The graphs track as the video predictor does: the model as predict-video builds it.
            tracked = build_model(
                model_settings, built.image_size, extra_overrides=TRACKING_OVERRIDES, load_weights=False
            ).model
            tracked.load_state_dict(model.state_dict())
            with torch.no_grad():
                report = export_onnx(tracked.float().eval(), built.image_size, staging, tolerance=tolerance)
            del tracked
            onnx_report = report.to_json()
            checks += [
                f"{graph.file}: onnxruntime vs PyTorch, max abs difference "
                f"{max(graph.max_abs_diff.values()):.2e} (tolerance {graph.tolerance:g})"
                for graph in report.graphs
            ]
        if tracker is not None and hf_version is not None:
            from sam2tool.export.hf_export import hf_card, hf_config, write_hf

            stage(f"Writing {HF_FOLDER}/ (transformers) and tracking a probe video with it")
            probe = write_hf(tracker, built.image_size, staging / HF_FOLDER, DTYPES[dtype])
            hf_report = hf_card(hf_version, hf_config(tracker, built.image_size), probe, built.image_size)
            checks.append(
                f"{HF_FOLDER}/: Sam2VideoModel and Sam2VideoProcessor.from_pretrained (transformers {hf_version}) "
                f"track a probe video like sam2 (>= {100 * min(probe.agreement):.2f} % equal mask pixels per frame)"
            )
        files = {path.name: file_entry(path) for path in sorted(staging.iterdir()) if path.is_file()}
        if hf_report is not None:
            from sam2tool.export.hf_export import hf_files

            files.update(hf_files(staging / HF_FOLDER, file_entry))
        card = model_card(settings, meta, built, checkpoint, dtype, files, onnx_report, hf_report)
        write_json(staging / MODEL_CARD, card)
    return ExportResult(output, files, card, checks)


def _require_hf() -> str:
    """The transformers version ``--format hf`` will use (checked before anything is built or written)."""
    from sam2tool.export.hf_export import require_transformers

    return require_transformers()


def _check_equal(loaded: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
    """Every expected tensor is present in ``loaded`` with equal values (after the dtype of ``loaded``)."""
    for key, value in expected.items():
        if key not in loaded:
            raise ExportError(f"{what}: weight {key} is missing after loading")
        other = loaded[key]
        if other.shape != value.shape or not torch.equal(other.to(value.dtype), value):
            raise ExportError(f"{what}: weight {key} differs after loading")


def model_card(
    settings: Sam2ToolSettings,
    meta: Mapping[str, Any] | None,
    built: Any,
    checkpoint: Path,
    dtype: str,
    files: Mapping[str, Any],
    onnx_report: Mapping[str, Any] | None,
    hf_report: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the model is, where it came from and how it did, as plain JSON data."""
    earlier = earlier_card(checkpoint) if meta is None else {}  # re-exporting an export keeps its lineage
    meta = dict(meta or {})
    trained = meta.get("config") or earlier.get("training_config")
    base = trained["model"]["checkpoint"] if isinstance(trained, Mapping) else str(checkpoint)
    if base == "official":
        base = built.spec.checkpoint_name
    lora = meta.get("lora") or earlier.get("lora")
    targets = trained["model"]["lora_targets"] if isinstance(trained, Mapping) else []
    card = {
        "sam2tool_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": built.spec.display_name,
            "version": built.spec.version,
            "size": built.spec.size,
            "image_size": built.image_size,
            "parameters": built.total_parameters,
        },
        "base_model": base,
        "source_checkpoint": {
            "path": str(checkpoint),
            "step": meta.get("step"),
            "epoch": meta.get("epoch"),
            "trained_with": meta.get("version"),
        },
        "lora": None if not lora else {**lora, "targets": targets, "merged": True},
        "data": meta.get("data")
        or earlier.get("data")
        or (manifest_fingerprint(settings.dataset.root) if trained else None),
        "validation": meta.get("validation")
        or earlier.get("validation")
        or (_validation_from_run(checkpoint) if meta else None),
        "training_config": trained,
        "dtype": dtype,
        "files": dict(files),
        "onnx": onnx_report,
        "hf": hf_report,
        "usage": {name: USAGE[name] for name in FORMATS if any(_format_of(f) == name for f in files)},
    }
    return {key: finite(value) for key, value in card.items()}


def _format_of(file_name: str) -> str:
    if file_name.startswith(f"{HF_FOLDER}/"):
        return "hf"
    if file_name.endswith(".onnx") or file_name == ONNX_MANIFEST:
        return "onnx"
    return "safetensors" if file_name.endswith(".safetensors") else "sam2"


def _validation_from_run(checkpoint: Path) -> dict[str, float] | None:
    """The last validation row of the run's ``metrics.csv`` (checkpoints of earlier sam2tool versions lack it)."""
    from sam2tool.training.run_files import METRICS_FILE, read_metrics

    metrics = checkpoint.resolve().parent.parent / METRICS_FILE
    if not metrics.is_file():
        return None
    rows = [row for row in read_metrics(metrics) if row.get("val/J&F")]
    if not rows:
        return None
    return {key: float(rows[-1][key]) for key in ("val/J", "val/F", "val/J&F") if rows[-1].get(key)}
