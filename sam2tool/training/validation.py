"""Validation J&F during training: the evaluator's semi-supervised protocol on held-out videos.

Each held-out video is tracked by the same streaming predictor ``predict-video`` and ``evaluate``
use, prompted with each object's ground-truth mask on the first annotated frame, and scored with
the DAVIS-exact J and F of ``sam2tool.metrics``. The predictor is built once and receives the
training model's current weights (LoRA adapters merged) before every validation. For the first
few videos it also draws an overlay picture (predicted masks above the ground truth, on a few
frames) that TensorBoard shows at each validation.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam2tool.config.schema import ModelSettings
from sam2tool.data.datamodule import ValidationVideo
from sam2tool.data.frames import FolderFrames
from sam2tool.data.layout import FRAMES_DIR, MASKS_DIR
from sam2tool.data.masks import MaskFolder
from sam2tool.errors import DataError
from sam2tool.metrics.evaluation import score_video
from sam2tool.models.prompts import ground_truth_prompts
from sam2tool.models.tracking import overlay, track

#: Held-out videos (the first ones) whose overlay picture is logged at each validation.
OVERLAY_VIDEOS = 4
#: Frames in an overlay picture, and the longer side of each, in pixels.
OVERLAY_FRAMES, OVERLAY_SIZE = 3, 320


@dataclass(frozen=True)
class VideoScore:
    """Each object's mean J and F over the video's evaluated frames (DAVIS averages objects).

    ``overlay``, when asked for, is an RGB picture (height, width, 3): a few annotated frames with
    the predicted masks tinted (top row) and the ground truth (bottom row).
    """

    video: str
    J: list[float]
    F: list[float]
    overlay: np.ndarray | None = None


class VideoValidator:
    """Tracks and scores held-out videos with a copy of the training model.

    Args:
        settings: The ``model`` section (architecture of the predictor).
        image_size: Input resolution.
        scratch: Folder for the predicted masks (created; its content is temporary).

    """

    def __init__(self, settings: ModelSettings, image_size: int, scratch: Path) -> None:
        self.settings, self.image_size, self.scratch = settings, image_size, scratch
        self.predictor: Any = None

    def load(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        """Build the predictor on first use and copy ``state`` (the training weights) into it."""
        if self.predictor is None:
            from sam2tool.models.build import STREAMING_PREDICTOR, VIDEO_PREDICTOR_OVERRIDES, build_model

            self.predictor = build_model(
                self.settings.model_copy(update={"lora_targets": [], "trainable_modules": ["all"]}),
                self.image_size,
                target=STREAMING_PREDICTOR,
                extra_overrides=VIDEO_PREDICTOR_OVERRIDES,
                load_weights=False,
            ).model
        self.predictor.load_state_dict(state, strict=True)
        self.predictor.to(device).eval()

    def score(self, video: ValidationVideo, draw_overlay: bool = False) -> VideoScore:
        """Track ``video`` from its first ground-truth masks and return its mean J and F (and overlay picture)."""
        if self.predictor is None:
            raise RuntimeError("call load() before score()")
        frames = FolderFrames(video.root / FRAMES_DIR / video.name)
        names = [frames.name(i) for i in range(len(frames))]
        gt_video = video.root / MASKS_DIR / video.name
        prompts = ground_truth_prompts(gt_video, names, "mask", "davis")
        self.scratch.mkdir(parents=True, exist_ok=True)
        output = Path(tempfile.mkdtemp(prefix=f"{video.name}.", dir=self.scratch))
        truth, predicted = MaskFolder(gt_video, "ground truth"), MaskFolder(output, "prediction")
        try:
            track(self.predictor, frames, output, prompts)
            objects = score_video(video.name, truth, predicted, "davis")
            picture = overlay_picture(frames, truth, predicted) if draw_overlay else None
        finally:
            shutil.rmtree(output, ignore_errors=True)
        summaries = [o.summary() for o in objects if o.j]
        return VideoScore(video.name, [float(s["J"]) for s in summaries], [float(s["F"]) for s in summaries], picture)

    def release(self) -> None:
        """Move the predictor off the accelerator between validations."""
        if self.predictor is not None:
            self.predictor.to("cpu")


def overlay_picture(
    frames: FolderFrames, truth: MaskFolder, predicted: MaskFolder, count: int = OVERLAY_FRAMES
) -> np.ndarray | None:
    """A picture of the masks: ``count`` annotated frames side by side, predicted above ground truth.

    The frames are evenly spaced after the prompted one; masks are tinted in their palette colours.
    None when no annotated frame was predicted.
    """
    index = {frames.name(i): i for i in range(len(frames))}
    written = set(predicted.frames())
    names = [name for name in truth.frames() if name in written and name in index]
    if not names:
        return None
    later = names[1:] or names  # the first annotated frame is the prompt: its prediction is the ground truth
    chosen = sorted({later[round(i * (len(later) - 1) / max(count - 1, 1))] for i in range(count)}, key=names.index)
    columns = []
    for name in chosen:
        image = np.asarray(frames.read(index[name]))
        rows = [overlay(image, labels) for labels in (predicted.read(name), truth.read(name)) if labels is not None]
        column = Image.fromarray(np.concatenate(rows, axis=0))
        scale = OVERLAY_SIZE / max(image.shape[:2])
        if scale < 1:
            column = column.resize(
                (round(column.width * scale), round(column.height * scale)), Image.Resampling.BILINEAR
            )
        columns.append(np.asarray(column))
    height = max(c.shape[0] for c in columns)
    padded = [np.pad(c, ((0, height - c.shape[0]), (0, 4), (0, 0)), constant_values=255) for c in columns]
    return np.concatenate(padded, axis=1)[:, :-4]


def check_validation_videos(videos: list[ValidationVideo], split: str) -> None:
    """Refuse held-out videos that cannot be scored (no ground-truth frame to prompt from)."""
    empty = [v.name for v in videos if not v.record.annotated]
    if empty:
        raise DataError(
            f"validation split {split!r} has videos without annotated frames ({', '.join(empty[:5])}); "
            "validation prompts each object with its first ground-truth mask. Remove them from "
            f"splits/{split}.txt or set trainer.limit_val_batches=0 to train without validation"
        )
