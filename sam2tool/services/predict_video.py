"""What ``predict-video`` does: prompts in, one DAVIS palette PNG per frame out, streaming.

Frames are read one at a time (see :mod:`sam2tool.models.streaming`); each frame's masks are
written as soon as they are computed, so an interrupted or failed run keeps what it wrote. Frames
before the first prompted frame are filled by a second, backward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.data.images import PALETTE, ImageProblem, read_label_mask, write_label_mask
from sam2tool.data.layout import DataError
from sam2tool.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class Prompt:
    """Prompts for one object on one frame (points with labels, a box, or a mask)."""

    frame: int
    obj_id: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class TrackOptions:
    """What to write besides the palette PNGs, and where to keep the tracking state.

    Attributes:
        offload: Keep the tracking state (memories, object pointers) in host memory.
        overlay: Write overlay JPEGs to ``OUTPUT/overlays/``.
        per_object: Write binary PNGs per object to ``OUTPUT/objects/<id>/``.
        save_video: Write an MP4 of the overlays there.
        fps: Frame rate of that MP4.

    """

    offload: bool = False
    overlay: bool = False
    per_object: bool = False
    save_video: Path | None = None
    fps: float = 24.0
    overwrite: bool = False


@dataclass
class PredictResult:
    """What ``predict-video`` wrote."""

    output: Path
    frames: int
    objects: list[int]
    seconds: float
    video: Path | None = None


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


def merge_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    """One prompt per (frame, object): clicks are pooled; a second box or mask, or a mask with clicks, is an error."""
    merged: dict[tuple[int, int], Prompt] = {}
    for p in prompts:
        key = (p.frame, p.obj_id)
        if key not in merged:
            merged[key] = Prompt(p.frame, p.obj_id, list(p.points), list(p.labels), p.box, p.mask)
            continue
        target = merged[key]
        if (p.box is not None and target.box is not None) or (p.mask is not None and target.mask is not None):
            raise UsageError(f"object {p.obj_id} on frame {p.frame} has two boxes or two masks; give one")
        target.points += p.points
        target.labels += p.labels
        target.box = target.box if p.box is None else p.box
        target.mask = target.mask if p.mask is None else p.mask
    return list(merged.values())


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


def validate_prompts(prompts: Sequence[Prompt], frames: int, width: int, height: int) -> None:
    """Check frames, coordinates, boxes and mask sizes against the video (UsageError otherwise)."""
    if not prompts:
        raise UsageError("give at least one prompt: --point, --box, --mask or --prompts")
    for p in prompts:
        name = f"object {p.obj_id} on frame {p.frame}"
        if not 0 <= p.frame < frames:
            raise UsageError(f"{name}: the video has frames 0..{frames - 1}")
        if p.obj_id < 1 or p.obj_id > 254:
            raise UsageError(f"{name}: object ids must be 1..254")
        if len(p.labels) != len(p.points):
            raise UsageError(f"{name}: {len(p.points)} points but {len(p.labels)} labels")
        if any(label not in (0, 1) for label in p.labels):
            raise UsageError(f"{name}: click labels must be 1 (object) or 0 (background), got {p.labels}")
        for x, y in p.points:
            if not (0 <= x < width and 0 <= y < height):
                raise UsageError(f"{name}: point ({x:g}, {y:g}) is outside the {width}x{height} frame")
        if p.box is not None:
            x1, y1, x2, y2 = p.box
            if not all(np.isfinite(p.box)):
                raise UsageError(f"{name}: box {list(p.box)} has a value that is not a number")
            if x2 <= x1 or y2 <= y1:
                raise UsageError(f"{name}: box {list(p.box)} needs x2 > x1 and y2 > y1")
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                raise UsageError(f"{name}: box {list(p.box)} is outside the {width}x{height} frame")
        if p.mask is not None and p.mask.shape != (height, width):
            raise UsageError(
                f"{name}: the mask is {p.mask.shape[1]}x{p.mask.shape[0]} but the frames are {width}x{height}"
            )
        if p.mask is not None and (p.points or p.box is not None):
            raise UsageError(f"{name}: give points/box or a mask, not both")
        if p.mask is None and not p.points and p.box is None:
            raise UsageError(f"{name}: no points, box or mask")


def resolve_device(name: str) -> str:
    """``auto`` picks CUDA, then MPS, then the CPU; an unavailable device is a usage error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available; use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available; use --device cpu")
    return name


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


def load_predictor(settings: Sam2ToolSettings, image_size: int, device: str = "auto", compile: bool = False) -> Any:
    """The streaming predictor for ``settings.model`` on ``device`` (``auto`` resolved).

    ``compile`` compiles the image encoder, memory attention, memory encoder, prompt encoder and
    mask decoder with ``torch.compile`` (as the official VOS-optimised predictor does); CUDA only.
    Random weights (``model.checkpoint: null``) are drawn with ``trainer.seed``: they are the
    weights a training run with that seed starts from.
    """
    import torch

    from sam2tool.models.build import build_video_predictor

    resolved = resolve_device(device)
    if compile and resolved != "cuda":
        raise UsageError("--compile needs a CUDA GPU (--device cuda); on other devices run without it")
    if settings.model.checkpoint is None:
        torch.manual_seed(settings.trainer.seed)
    predictor = build_video_predictor(settings.model, image_size, device=resolved, progress=True).model
    if compile:
        for name in ("image_encoder", "memory_attention", "memory_encoder", "sam_prompt_encoder", "sam_mask_decoder"):
            module = getattr(predictor, name)
            module.forward = torch.compile(module.forward, mode="max-autotune", dynamic=False)
    return predictor


def predict_video(
    source: Path,
    output: Path,
    settings: Sam2ToolSettings,
    image_size: int,
    prompts: Sequence[Prompt],
    *,
    device: str = "auto",
    compile: bool = False,
    options: TrackOptions = TrackOptions(),
    on_frame: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """Build the model of ``settings`` and run :func:`track` with it."""
    if not source.exists():
        raise UsageError(f"input {source} does not exist; give a folder of frames or a video file")
    check_output(source, output, options)
    resolve_device(device)  # refuse an unavailable device before loading anything
    from sam2tool.models.streaming import open_frames

    try:
        frames = open_frames(source)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    width, height = frames.read(0).size
    prompts = merge_prompts(prompts)
    validate_prompts(prompts, len(frames), width, height)
    predictor = load_predictor(settings, image_size, device, compile)
    return track(predictor, frames, output, prompts, options, on_frame)


def track(
    predictor: Any,
    frames: Any,
    output: Path,
    prompts: Sequence[Prompt],
    options: TrackOptions = TrackOptions(),
    on_frame: Callable[[int, int], None] | None = None,
) -> PredictResult:
    """Track the prompted objects through ``frames`` and write masks into ``output``.

    Raises:
        UsageError: Bad prompts.
        DataError: Unreadable frames (masks written so far are kept).

    """
    import tempfile
    import time

    import torch
    from PIL import Image

    from sam2tool.models.streaming import VideoFileFrames, extract_frames

    width, height = frames.read(0).size
    validate_prompts(prompts, len(frames), width, height)
    output.mkdir(parents=True, exist_ok=True)
    written: set[int] = set()
    cleanup: list[tempfile.TemporaryDirectory[str]] = []
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            state = predictor.init_state(frames, offload_state_to_cpu=options.offload)
            for p in prompts:
                if p.mask is not None:
                    predictor.add_new_mask(state, frame_idx=p.frame, obj_id=p.obj_id, mask=p.mask)
                else:
                    predictor.add_new_points_or_box(
                        state,
                        frame_idx=p.frame,
                        obj_id=p.obj_id,
                        points=np.asarray(p.points, dtype=np.float32) if p.points else None,
                        labels=np.asarray(p.labels, dtype=np.int32) if p.points else None,
                        box=np.asarray(p.box, dtype=np.float32) if p.box is not None else None,
                    )
            first_prompted = min(p.frame for p in prompts)
            passes = [False] + ([True] if first_prompted > 0 else [])
            for reverse in passes:
                if reverse and isinstance(frames, VideoFileFrames):
                    scratch = tempfile.TemporaryDirectory(prefix=".sam2tool-frames-", dir=output)
                    cleanup.append(scratch)
                    state["images"].source = extract_frames(frames, first_prompted, Path(scratch.name))
                for frame_idx, obj_ids, logits in predictor.propagate_in_video(
                    state, start_frame_idx=first_prompted, reverse=reverse
                ):
                    if frame_idx in written:
                        continue
                    labels = _labels(logits, obj_ids)
                    name = frames.name(frame_idx)
                    write_label_mask(output / f"{name}.png", labels, atomic=True)
                    if options.per_object:
                        for k in obj_ids:
                            binary = (labels == k).astype(np.uint8) * 255
                            write_label_mask(
                                output / "objects" / str(k) / f"{name}.png", binary, atomic=True, palette=False
                            )
                    if options.overlay:
                        picture = _overlay(np.asarray(state["images"].picture(frame_idx)), labels)
                        (output / "overlays").mkdir(exist_ok=True)
                        Image.fromarray(picture).save(output / "overlays" / f"{name}.jpg", quality=90)
                    written.add(frame_idx)
                    if on_frame is not None:
                        on_frame(len(written), len(frames))
    finally:
        for scratch in cleanup:
            scratch.cleanup()
        if options.save_video is not None and written:
            _write_video(frames, output, sorted(written), options.save_video, options.fps, width, height)
    if len(written) < len(frames):
        log.warning("%d frames after the last tracked one have no masks", len(frames) - len(written))
    objects = sorted({p.obj_id for p in prompts})
    return PredictResult(output, len(written), objects, time.perf_counter() - start, options.save_video)


def _labels(logits: Any, obj_ids: Sequence[int]) -> np.ndarray:
    """One label map from per-object logits (N, 1, H, W): the object with the highest positive logit."""
    scores: np.ndarray = logits[:, 0].float().cpu().numpy()
    best = scores.argmax(axis=0)
    labels: np.ndarray = np.asarray(obj_ids, dtype=np.uint8)[best]
    labels[scores.max(axis=0) <= 0] = 0
    return labels


def _overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The frame with each object tinted in its palette colour."""
    colours = PALETTE[labels].astype(np.float32)
    mixed: np.ndarray = np.where(labels[..., None] > 0, 0.45 * frame + 0.55 * colours, frame).astype(np.uint8)
    return mixed


def _write_video(
    frames: Any, output: Path, indices: list[int], path: Path, fps: float, width: int, height: int
) -> None:
    """An MP4 of the overlays of the written frames, in order (read back one frame at a time)."""
    video = _OverlayVideo(path, fps, width, height)
    try:
        for index in indices:
            labels = read_label_mask(output / f"{frames.name(index)}.png")
            video.write(_overlay(np.asarray(frames.read(index)), labels))
    finally:
        video.close()


class _OverlayVideo:
    """An MP4 of overlays, written to a temporary sibling and renamed when complete."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        import cv2

        self.path = path
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise DataError(f"cannot write the video {path} (OpenCV has no MP4 writer here)")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()
        if self.tmp.exists():
            self.tmp.replace(self.path)
