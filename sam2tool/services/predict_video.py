"""What ``predict-video`` does: prompts in, one DAVIS palette PNG per frame out, streaming.

This module reads the prompts a user gives (clicks, boxes, masks, a prompts file) and checks the
input and output before any work; the tracking itself is :func:`sam2tool.models.tracking.track`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam2tool.config.loading import load_settings
from sam2tool.config.registry import get_spec, official_checkpoint_spec
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.config.sources import override_keys
from sam2tool.data.frames import FolderFrames, VideoFileFrames, open_frames
from sam2tool.data.images import ImageProblem, read_label_mask
from sam2tool.errors import DataError, UsageError
from sam2tool.models.prompts import Prompt, merge_prompts, validate_prompts
from sam2tool.models.tracking import PredictResult, TrackOptions, load_predictor, resolve_device, track


def parse_point(text: str) -> tuple[float, float, int]:
    """``"X,Y"`` or ``"X,Y,LABEL"`` (label 1 = foreground, 0 = background)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise UsageError(f"--point {text!r} must look like X,Y or X,Y,LABEL (e.g. 320,240 or 320,240,0)") from None
    if label not in (0, 1):
        raise UsageError(f"--point {text!r}: the label must be 1 (object) or 0 (background)")
    return x, y, label


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"X1,Y1,X2,Y2"``."""
    try:
        x1, y1, x2, y2 = (float(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"--box {text!r} must look like X1,Y1,X2,Y2 (e.g. 100,80,300,260)") from None
    return x1, y1, x2, y2


def mask_prompts(path: Path, frame: int) -> list[Prompt]:
    """One prompt per label of a palette/label PNG (label = object id)."""
    if not path.is_file():
        raise UsageError(f"mask {path} does not exist")
    try:
        labels = read_label_mask(path)
    except ImageProblem as exc:
        raise UsageError(str(exc)) from None
    ids = [int(v) for v in np.unique(labels) if v not in (0, 255)]
    if not ids:
        raise UsageError(f"mask {path} has no object (all pixels are 0 or 255)")
    return [Prompt(frame, k, mask=labels == k) for k in ids]


def load_prompts_file(path: Path) -> list[Prompt]:
    """Prompts from JSON or YAML: a list of ``{frame, obj_id, points, labels, box, mask}``.

    ``mask`` is a PNG path relative to the file; with a palette PNG and no ``obj_id``, every label
    becomes an object.
    """
    import yaml

    if not path.is_file():
        raise UsageError(f"prompts file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"prompts file {path} is not valid JSON or YAML ({exc})") from None
    entries = data.get("prompts", data) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"prompts file {path} must hold a list of prompts (frame, obj_id, points/box/mask)")
    prompts: list[Prompt] = []
    for index, entry in enumerate(entries):
        where = f"{path} prompt {index + 1}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} is not a mapping")
        unknown = set(entry) - {"frame", "obj_id", "points", "labels", "box", "mask"}
        if unknown:
            raise UsageError(f"{where} has unknown keys {sorted(unknown)}")
        try:
            frame = int(entry.get("frame", 0))
            if "mask" in entry and "obj_id" not in entry:
                if entry.get("points") or entry.get("box") is not None:
                    raise UsageError(
                        f"{where}: a mask without obj_id gives one object per label; give points/box separately"
                    )
                prompts += mask_prompts(path.parent / str(entry["mask"]), frame)
                continue
            obj_id = int(entry.get("obj_id", 1))
            prompt = Prompt(frame, obj_id)
            points = entry.get("points") or []
            prompt.points = [(float(p[0]), float(p[1])) for p in points]
            prompt.labels = [int(v) for v in entry.get("labels", [1] * len(points))]
            if entry.get("box") is not None:
                x1, y1, x2, y2 = (float(v) for v in entry["box"])
                prompt.box = (x1, y1, x2, y2)
            if "mask" in entry:
                matching = [m for m in mask_prompts(path.parent / str(entry["mask"]), frame) if m.obj_id == obj_id]
                if not matching:
                    raise UsageError(f"{where}: mask {entry['mask']} has no label {obj_id}")
                prompt.mask = matching[0].mask
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise UsageError(f"{where} is malformed ({exc})") from None
        prompts.append(prompt)
    return prompts


def check_output(source: Path, output: Path, options: TrackOptions) -> None:
    """Refuse outputs that would overwrite the input or another file, before any work is done."""
    src, out = source.resolve(), output.resolve()
    if out == src or src in out.parents or (source.is_dir() and out in src.parents):
        raise UsageError(f"--output {output} overlaps the input {source}; choose a separate folder")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; give a folder")
    if output.is_dir() and any(output.glob("*.png")) and not options.overwrite:
        raise UsageError(f"--output {output} already holds masks; pass --force to overwrite them")
    video = options.save_video
    if video is not None:
        if video.is_dir():
            raise UsageError(f"--save-video {video} is a folder; give a file name ending in .mp4")
        if video.suffix.lower() != ".mp4":
            raise UsageError(f"--save-video {video}: only .mp4 files are written")


@dataclass(frozen=True)
class PromptInputs:
    """The prompts as a user gives them on the command line.

    Attributes:
        points: Clicks ``X,Y[,LABEL]`` for ``obj_id`` on ``frame``.
        box: A box ``X1,Y1,X2,Y2`` for ``obj_id`` on ``frame``.
        mask: A palette/label PNG: one object per label, on ``frame``.
        prompts_file: A JSON/YAML list of prompts for several objects.
        obj_id: The object of ``points`` and ``box``.
        frame: The frame of ``points``, ``box`` and ``mask``.

    """

    points: Sequence[str] = ()
    box: str | None = None
    mask: Path | None = None
    prompts_file: Path | None = None
    obj_id: int = 1
    frame: int = 0


def gather_prompts(inputs: PromptInputs) -> list[Prompt]:
    """Every prompt the inputs give, in order: clicks and box, then the mask's labels, then the file's.

    Raises:
        UsageError: A malformed click, box, mask or prompts file, or ``--obj-id`` with ``--mask``.

    """
    items: list[Prompt] = []
    if inputs.points or inputs.box:
        clicks = [parse_point(p) for p in inputs.points]
        items.append(
            Prompt(
                inputs.frame,
                inputs.obj_id,
                points=[(x, y) for x, y, _ in clicks],
                labels=[label for _, _, label in clicks],
                box=parse_box(inputs.box) if inputs.box else None,
            )
        )
    if inputs.mask is not None:
        if inputs.obj_id != 1:
            raise UsageError("--mask gives one object per label of the PNG; --obj-id does not apply to it")
        items += mask_prompts(inputs.mask, inputs.frame)
    if inputs.prompts_file is not None:
        items += load_prompts_file(inputs.prompts_file)
    return items


def model_settings(
    config: Path | None = None,
    checkpoint: str | None = None,
    model: str | None = None,
    image_size: int | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Sam2ToolSettings, int]:
    """The settings of the model to track with, and its input size.

    ``model`` names an official model (or the packaged base); ``checkpoint`` is a training
    checkpoint or an export (their model and size are used when neither ``config`` nor ``model``
    is given), or an official checkpoint file. ``key.path=value`` ``overrides`` go on top of the
    config or the checkpoint's settings. Without ``config``, ``image_size`` or a
    ``dataset.image_size`` override, the size is what the model was trained at (1024, or 128 for micro).

    Raises:
        UsageError: An unknown model name, or settings that do not validate.

    """
    explicit: dict[str, object] = {}  # the flags: they win over overrides, as in train
    if model is not None:
        spec = official_checkpoint_spec(model)
        if spec is None:
            raise UsageError(
                f"--model {model!r} is not an official model name (e.g. sam2.1_hiera_tiny, or sam2.1_micro, "
                "the base packaged with sam2tool)"
            )
        explicit.update({"model.version": spec.version, "model.size": spec.size, "model.checkpoint": "official"})
    from sam2tool.models.checkpoints import trained_model_flags  # torch: not for --backend onnxruntime
    from sam2tool.models.onnx_bundle import MANIFEST_FILE

    if checkpoint is not None and (Path(checkpoint) / MANIFEST_FILE).is_file():
        raise UsageError(
            f"--checkpoint {checkpoint} is an ONNX export folder: track with it with --backend onnxruntime "
            "(or give the export's model.pt)"
        )

    trained = None
    if checkpoint is not None:
        if config is None and model is None and Path(checkpoint).is_file():
            trained = trained_model_flags(Path(checkpoint))  # the model it was trained as
        explicit["model.checkpoint"] = checkpoint
    if image_size is not None:
        explicit["dataset.image_size"] = image_size  # validated like the config key
    given = override_keys(overrides)  # they win over what the checkpoint says
    base = {key: value for key, value in (trained or {}).items() if key not in given}
    settings = load_settings(config, overrides, {**base, **explicit})
    known_size = config is not None or trained is not None or "dataset.image_size" in given | set(explicit)
    trained_at = get_spec(settings.model.version, settings.model.size).image_size
    return settings, settings.dataset.image_size if known_size else trained_at


def onnx_export_folder(
    checkpoint: str | None,
    config: Path | None = None,
    model: str | None = None,
    image_size: int | None = None,
    compile: bool = False,
    overrides: Sequence[str] = (),
) -> Path:
    """The export folder ``--backend onnxruntime`` tracks with; options that choose a PyTorch model are refused.

    Raises:
        UsageError: No ``--checkpoint``, or an option the export already fixes (model, size, settings).

    """
    from sam2tool.models.onnx_bundle import EXPORT_HINT

    given = {
        "--config": config is not None,
        "--model": model is not None,
        "--image-size": image_size is not None,
        "--compile": compile,
        "key.path=value overrides": bool(overrides),
    }
    for flag, present in given.items():
        if present:
            raise UsageError(
                f"{flag} does not apply with --backend onnxruntime: the export folder fixes the model, its size "
                "and settings; leave it out (or export again with it)"
            )
    if checkpoint is None:
        raise UsageError(f"--backend onnxruntime needs --checkpoint EXPORT_DIR; {EXPORT_HINT}")
    return Path(checkpoint)


def predict_video(
    source: Path,
    output: Path,
    settings: Sam2ToolSettings,
    image_size: int,
    prompts: Sequence[Prompt],
    *,
    device: str = "auto",
    compile: bool = False,
    options: TrackOptions | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """Build the model of ``settings`` and run :func:`sam2tool.models.tracking.track` with it."""
    options = options or TrackOptions()
    frames, prompts = _open_video(source, output, prompts, options)
    resolve_device(device)  # refuse an unavailable device before loading anything
    predictor = load_predictor(settings, image_size, device, compile)
    return track(predictor, frames, output, prompts, options, on_frame)


def predict_video_onnx(
    source: Path,
    output: Path,
    export: Path,
    prompts: Sequence[Prompt],
    *,
    device: str = "auto",
    options: TrackOptions | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """Track with the graphs of an ONNX export folder in onnxruntime (``--backend onnxruntime``).

    Raises:
        UsageError: onnxruntime is missing, ``export`` is not a complete export folder (or its
            graphs come from different exports), or the input, output or prompts are wrong.

    """
    from sam2tool.models.onnx_bundle import onnx_providers, open_bundle
    from sam2tool.models.onnx_tracker import OnnxVideoPredictor

    options = options or TrackOptions()
    providers = onnx_providers(device)
    bundle = open_bundle(export, providers)
    frames, prompts = _open_video(source, output, prompts, options)
    return track(OnnxVideoPredictor(bundle), frames, output, prompts, options, on_frame)


def _open_video(
    source: Path, output: Path, prompts: Sequence[Prompt], options: TrackOptions
) -> tuple[FolderFrames | VideoFileFrames, list[Prompt]]:
    """The input's frames and the merged prompts, checked against it; the output checked too."""
    if not source.exists():
        raise UsageError(f"input {source} does not exist; give a folder of frames or a video file")
    check_output(source, output, options)
    try:
        frames = open_frames(source)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    width, height = frames.read(0).size
    merged = merge_prompts(prompts)
    validate_prompts(merged, len(frames), width, height)
    return frames, merged
