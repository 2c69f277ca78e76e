"""Validation J&F during training: the evaluator's semi-supervised protocol on held-out videos.

Each held-out video is tracked by the same streaming predictor ``predict-video`` and ``evaluate``
use, prompted with each object's ground-truth mask on the first annotated frame, and scored with
the DAVIS-exact J and F of ``sam2tool.metrics``. The predictor is built once and receives the
training model's current weights (LoRA adapters merged) before every validation.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sam2tool.config.schema import ModelSettings
from sam2tool.data.datamodule import ValidationVideo
from sam2tool.data.layout import FRAMES_DIR, MASKS_DIR
from sam2tool.data.masks import MaskFolder
from sam2tool.errors import DataError
from sam2tool.metrics.evaluation import score_video
from sam2tool.models.prompts import ground_truth_prompts
from sam2tool.models.streaming import FolderFrames
from sam2tool.models.tracking import track


@dataclass(frozen=True)
class VideoScore:
    """Each object's mean J and F over the video's evaluated frames (DAVIS averages objects)."""

    video: str
    J: list[float]
    F: list[float]


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

    def score(self, video: ValidationVideo) -> VideoScore:
        """Track ``video`` from its first ground-truth masks and return its mean J and F."""
        if self.predictor is None:
            raise RuntimeError("call load() before score()")
        frames = FolderFrames(video.root / FRAMES_DIR / video.name)
        names = [frames.name(i) for i in range(len(frames))]
        gt_video = video.root / MASKS_DIR / video.name
        prompts = ground_truth_prompts(gt_video, names, "mask", "davis")
        self.scratch.mkdir(parents=True, exist_ok=True)
        output = Path(tempfile.mkdtemp(prefix=f"{video.name}.", dir=self.scratch))
        try:
            track(self.predictor, frames, output, prompts)
            objects = score_video(
                video.name, MaskFolder(gt_video, "ground truth"), MaskFolder(output, "prediction"), "davis"
            )
        finally:
            shutil.rmtree(output, ignore_errors=True)
        summaries = [o.summary() for o in objects if o.j]
        return VideoScore(video.name, [float(s["J"]) for s in summaries], [float(s["F"]) for s in summaries])

    def release(self) -> None:
        """Move the predictor off the accelerator between validations."""
        if self.predictor is not None:
            self.predictor.to("cpu")


def check_validation_videos(videos: list[ValidationVideo], split: str) -> None:
    """Refuse held-out videos that cannot be scored (no ground-truth frame to prompt from)."""
    empty = [v.name for v in videos if not v.record.annotated]
    if empty:
        raise DataError(
            f"validation split {split!r} has videos without annotated frames ({', '.join(empty[:5])}); "
            "validation prompts each object with its first ground-truth mask. Remove them from "
            f"splits/{split}.txt or set trainer.limit_val_batches=0 to train without validation"
        )
