"""Tracking prompted objects through a video with the streaming predictor, writing masks as it goes.

Frames are read one at a time (see :mod:`sam2tool.models.streaming`); each frame's masks are
written as soon as they are computed, so an interrupted or failed run keeps what it wrote. Frames
before the first prompted frame are filled by a second, backward pass. ``predict-video``,
``evaluate`` and validation during training all track with :func:`track`, with the PyTorch
predictor or, for ``predict-video --backend onnxruntime``, the onnxruntime one
(:mod:`sam2tool.models.onnx_tracker`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.data.images import PALETTE, read_label_mask, write_label_mask
from sam2tool.errors import DataError, UsageError
from sam2tool.models.prompts import Prompt, validate_prompts

log = logging.getLogger(__name__)


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

    from PIL import Image

    from sam2tool.data.frames import VideoFileFrames, extract_frames

    width, height = frames.read(0).size
    validate_prompts(prompts, len(frames), width, height)
    output.mkdir(parents=True, exist_ok=True)
    written: set[int] = set()
    cleanup: list[tempfile.TemporaryDirectory[str]] = []
    start = time.perf_counter()
    try:
        with _inference_mode(predictor):
            state = predictor.init_state(frames, offload_state_to_cpu=options.offload)
            first_prompted = min(p.frame for p in prompts)

            def before_backward_pass() -> None:
                if isinstance(frames, VideoFileFrames):  # read extracted PNGs instead of seeking backwards
                    scratch = tempfile.TemporaryDirectory(prefix=".sam2tool-frames-", dir=output)
                    cleanup.append(scratch)
                    state["images"].source = extract_frames(frames, first_prompted, Path(scratch.name))

            for frame_idx, obj_ids, logits in propagate(predictor, state, prompts, before_backward_pass):
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
                    picture = overlay(np.asarray(state["images"].picture(frame_idx)), labels)
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


def propagate(
    predictor: Any, state: Any, prompts: Sequence[Prompt], before_backward_pass: Callable[[], None] | None = None
) -> Iterator[tuple[int, list[int], Any]]:
    """Give the predictor the prompts, then yield ``(frame, object ids, logits)`` once per frame.

    Forward from the first prompted frame to the end, then, when that frame is not the first,
    backward from it to frame 0 (``before_backward_pass`` runs first). Frames come in tracking
    order; the logits are the predictor's (a torch tensor or a numpy array, ``[N, 1, H, W]``).
    """
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
    seen: set[int] = set()
    for reverse in [False] + ([True] if first_prompted > 0 else []):
        if reverse and before_backward_pass is not None:
            before_backward_pass()
        for frame_idx, obj_ids, logits in predictor.propagate_in_video(
            state, start_frame_idx=first_prompted, reverse=reverse
        ):
            if frame_idx not in seen:
                seen.add(frame_idx)
                yield frame_idx, list(obj_ids), logits


def _inference_mode(predictor: Any) -> contextlib.AbstractContextManager[Any]:
    """``torch.inference_mode()`` for a PyTorch predictor; nothing for the onnxruntime one (no torch)."""
    from sam2tool.models.onnx_tracker import OnnxVideoPredictor

    if isinstance(predictor, OnnxVideoPredictor):
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


def _labels(logits: Any, obj_ids: Sequence[int]) -> np.ndarray:
    """One label map from per-object logits (N, 1, H, W): the object with the highest positive logit."""
    chosen = logits[:, 0]
    scores: np.ndarray = np.asarray(chosen if isinstance(chosen, np.ndarray) else chosen.float().cpu().numpy())
    best = scores.argmax(axis=0)
    labels: np.ndarray = np.asarray(obj_ids, dtype=np.uint8)[best]
    labels[scores.max(axis=0) <= 0] = 0
    return labels


def overlay(frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
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
            video.write(overlay(np.asarray(frames.read(index)), labels))
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
