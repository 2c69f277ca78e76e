"""Prompts: which object to track, where, and with what (clicks, a box or a mask).

One place for what a prompt is and when it is valid for a video, and for the semi-supervised
prompts that ``evaluate`` and validation during training derive from ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sam2tool.config.choices import EvalProtocol, PromptKind
from sam2tool.data.images import read_label_mask
from sam2tool.data.masks import MaskFolder
from sam2tool.errors import DataError, UsageError


@dataclass
class Prompt:
    """Prompts for one object on one frame (points with labels, a box, or a mask)."""

    frame: int
    obj_id: int
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


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


def ground_truth_prompts(
    gt_video: Path, frame_names: list[str], kind: PromptKind, protocol: EvalProtocol
) -> list[Prompt]:
    """The semi-supervised prompts of a video: each object's ground truth on its first annotated frame.

    DAVIS: the objects of the first ground-truth frame, prompted there. SA-V: every object, prompted
    on the first ground-truth frame where it appears. ``box`` and ``point`` prompts are derived from
    that mask: its bounding box, or the pixel farthest inside it.
    """
    import cv2

    stems = MaskFolder(gt_video, "ground truth").frames()
    if not stems:
        raise DataError(f"ground truth {gt_video} has no annotated frame; a prompt needs one")
    prompts: list[Prompt] = []
    seen: set[int] = set()
    for stem in stems if protocol == "sav" else stems[:1]:
        labels = read_label_mask(gt_video / f"{stem}.png")
        if stem not in frame_names:
            raise DataError(f"ground truth {gt_video / stem}.png has no frame {stem} in the frames folder")
        frame = frame_names.index(stem)
        for k in (int(v) for v in np.unique(labels)):
            if k in (0, 255) or k in seen:
                continue
            seen.add(k)
            mask = labels == k
            if kind == "mask":
                prompts.append(Prompt(frame, k, mask=mask))
            elif kind == "box":
                ys, xs = np.nonzero(mask)
                prompts.append(
                    Prompt(frame, k, box=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
                )
            else:
                distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
                y, x = np.unravel_index(int(distance.argmax()), distance.shape)
                prompts.append(Prompt(frame, k, points=[(float(x), float(y))], labels=[1]))
    if not prompts:
        raise DataError(f"the first annotated frame of {gt_video} shows no object to prompt")
    return prompts
