"""Scoring a folder of predicted masks against ground truth: DAVIS and SA-V protocols.

Ground truth and predictions are handed in as readers of one video's label maps by frame name
(:class:`LabelMaps`; :class:`sam2tool.data.masks.MaskFolder` reads DAVIS palette PNGs). Frames are
read one at a time, so memory stays O(H x W) per video whatever its length.

DAVIS protocol (davis2017-evaluation, semi-supervised): the ground-truth frames of a video minus
the first and the last; objects 1..N where N is the largest id on the first ground-truth frame;
255 in the ground truth counts as background, as davis2017-evaluation reads it; predictions must
not use ids above N. Per object: mean, recall and decay of J and F over the frames.

SA-V protocol (vos-benchmark, used for SA-V and MOSE): objects may appear after the first frame;
first and last ground-truth frames are skipped; an object is scored from the first frame where
it appears in the ground truth or the prediction; frames without ground truth are ignored.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sam2tool.config.choices import EvalProtocol
from sam2tool.errors import DataError
from sam2tool.metrics.frame import boundary_radius, score_objects
from sam2tool.metrics.statistics import mean_recall_decay

#: The label of pixels that are neither background nor an object (DAVIS's void).
VOID_LABEL = 255


class LabelMaps(typing.Protocol):
    """One video's label maps by frame name: what the scorer reads (it walks no folders itself).

    :class:`sam2tool.data.masks.MaskFolder` reads them from a folder of PNGs.
    """

    @property
    def name(self) -> str:
        """Where the video's label maps are, as messages name it."""
        ...

    def exists(self) -> bool:
        """Whether the video has label maps at all (its folder exists)."""
        ...

    def frames(self) -> list[str]:
        """Names of the frames that have a label map, in order."""
        ...

    def where(self, frame: str) -> str:
        """Where ``frame``'s label map is, as messages name it."""
        ...

    def read(self, frame: str) -> np.ndarray | None:
        """``frame``'s label map (uint8, H x W), or None when it has none; DataError when unreadable."""
        ...


@dataclass
class ObjectScores:
    """Per-frame J and F of one object of one video, and their statistics."""

    video: str
    object: int
    frames: list[str] = field(default_factory=list)
    j: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | str]:
        """``{"video", "object", "J", "F", "J&F", "J-Recall", "F-Recall", "J-Decay", "F-Decay", "frames"}``."""
        j_mean, j_recall, j_decay = mean_recall_decay(self.j)
        f_mean, f_recall, f_decay = mean_recall_decay(self.f)
        return {
            "video": self.video,
            "object": self.object,
            "J&F": (j_mean + f_mean) / 2,
            "J": j_mean,
            "F": f_mean,
            "J-Recall": j_recall,
            "F-Recall": f_recall,
            "J-Decay": j_decay,
            "F-Decay": f_decay,
            "frames": len(self.j),
        }


def score_video(
    video: str,
    ground_truth: LabelMaps,
    predictions: LabelMaps,
    protocol: EvalProtocol = "davis",
    bound_th: float = 0.008,
) -> list[ObjectScores]:
    """Score one video's predictions against its ground truth.

    Raises:
        DataError: Prediction frames are missing, unreadable, of another size, or (DAVIS) use
            ids that are not objects of the ground truth.

    """
    stems = ground_truth.frames()
    if not stems:
        raise DataError(f"ground truth {ground_truth.name} has no PNG masks")
    if not predictions.exists():
        raise DataError(f"predictions have no folder for video {video} (expected {predictions.name})")
    evaluated = stems[1:-1]
    first = _read(ground_truth, stems[0])
    first[first == VOID_LABEL] = 0
    objects = list(range(1, int(first.max()) + 1)) if protocol == "davis" else []
    scores: dict[int, ObjectScores] = {k: ObjectScores(video, k) for k in objects}
    radius: int | None = None
    for stem in evaluated:
        gt = _read(ground_truth, stem)
        pred = predictions.read(stem)
        pred_path = predictions.where(stem)
        if pred is None:
            raise DataError(f"predictions for video {video} lack frame {stem} ({pred_path})")
        if pred.shape != gt.shape:
            raise DataError(
                f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} but the ground truth is "
                f"{gt.shape[1]}x{gt.shape[0]}"
            )
        gt[gt == VOID_LABEL] = 0
        if protocol == "davis":
            extra = sorted({int(v) for v in np.unique(pred)} - {0, *objects})
            if extra:
                raise DataError(
                    f"prediction {pred_path} has ids {extra} that are not objects of the ground truth "
                    f"(objects 1..{len(objects)} on its first frame)"
                )
        else:
            seen = {int(v) for v in np.unique(gt)} | {int(v) for v in np.unique(pred)}
            for k in sorted(seen - {0, VOID_LABEL} - set(scores)):
                scores[k] = ObjectScores(video, k)
        if radius is None:
            radius = boundary_radius(gt.shape[0], gt.shape[1], bound_th)
        ids = sorted(scores)
        j_values, f_values = score_objects(gt, pred, ids, radius)
        for k, j, f in zip(ids, j_values, f_values, strict=True):
            scores[k].frames.append(stem)
            scores[k].j.append(j)
            scores[k].f.append(f)
    if protocol == "sav":
        # Only objects of the ground truth are reported (vos-benchmark's convention).
        present = _objects_in_ground_truth(ground_truth, evaluated)
        return [scores[k] for k in sorted(scores) if k in present]
    return [scores[k] for k in objects]


def _objects_in_ground_truth(ground_truth: LabelMaps, stems: Sequence[str]) -> set[int]:
    found: set[int] = set()
    for stem in stems:
        found |= {int(v) for v in np.unique(_read(ground_truth, stem))}
    return found - {0, VOID_LABEL}


def _read(ground_truth: LabelMaps, frame: str) -> np.ndarray:
    labels = ground_truth.read(frame)
    if labels is None:
        raise DataError(f"ground truth {ground_truth.where(frame)} does not exist")
    return labels


def overall(summaries: Sequence[dict[str, float | int | str]]) -> dict[str, float]:
    """Averages over all objects of all videos; ``J&F`` is the mean of J-Mean and F-Mean.

    Objects without any scored frame (videos of fewer than three ground-truth frames under the
    DAVIS protocol) are left out.
    """
    keys = ("J", "F", "J-Recall", "F-Recall", "J-Decay", "F-Decay")
    scored = [s for s in summaries if int(s["frames"])]
    if not scored:
        return {key: float("nan") for key in ("J&F", *keys)}
    with np.errstate(all="ignore"):
        means = {key: float(np.nanmean([float(s[key]) for s in scored])) for key in keys}
    return {"J&F": (means["J"] + means["F"]) / 2, **means}
