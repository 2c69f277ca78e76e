"""Which frames' outputs a SAM 2 tracker can forget: the rule both predict-video backends follow.

Memory attention reads the conditioning (prompted) frames, the last ``num_maskmem`` frames (times
the temporal stride) and the object pointers of the last ``max_obj_ptrs_in_encoder`` frames.
Outputs further behind than that can go, except those within the same distance of a frame where
any object was prompted: a pass in the other direction starts at the first of them and then
reads every object's outputs near it. No torch here.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def memory_window(num_maskmem: int, temporal_stride: int, max_obj_ptrs_in_encoder: int) -> int:
    """How many frames back (or ahead, in reverse) a frame's outputs can still be attended to."""
    return max((num_maskmem + 1) * max(temporal_stride, 1), max_obj_ptrs_in_encoder) + 1


def forget(
    outputs: MutableMapping[int, Any],
    tracked: MutableMapping[int, Any],
    prompted: set[int],
    frame_idx: int,
    reverse: bool,
    window: int,
) -> None:
    """Drop one object's non-conditioning ``outputs`` and ``tracked`` marks that no frame after ``frame_idx`` reads.

    ``prompted`` holds the frames where any object was prompted (not only this one).
    """

    def forgettable(t: int) -> bool:
        behind = t > frame_idx + window if reverse else t < frame_idx - window
        return behind and all(abs(t - c) > window for c in prompted)

    for old in [t for t in outputs if forgettable(t)]:
        del outputs[old]
    for old in [t for t in tracked if forgettable(t) and t not in prompted]:
        del tracked[old]
