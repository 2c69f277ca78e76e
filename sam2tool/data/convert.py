"""Turn one source video into the canonical layout, checking everything on the way.

Frames are decoded once to check them (corrupt, truncated, size, EXIF orientation); JPEG files
that need no change are copied byte for byte, everything else is encoded as JPEG (quality 95).
Masks become DAVIS palette PNGs. All problems of a video are collected before giving up on it.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sam2tool.data.formats.base import SourceFrame, SourceVideo
from sam2tool.data.images import (
    ImageProblem,
    is_plain_jpeg,
    object_ids,
    read_frame,
    read_label_mask,
    write_frame,
    write_label_mask,
)
from sam2tool.data.layout import (
    FRAME_SUFFIX,
    FRAMES_DIR,
    MASK_SUFFIX,
    MASKS_DIR,
    VideoRecord,
    check_name,
    frame_stem,
    stem_width,
)
from sam2tool.errors import DataError, UsageError

#: Stop collecting problems of one video after this many (the rest are usually the same).
MAX_PROBLEMS_PER_VIDEO = 10


class VideoProblems(Exception):
    """A video cannot be converted; ``problems`` lists why, each naming a file."""

    def __init__(self, name: str, problems: Sequence[str]) -> None:
        super().__init__(f"{name}: " + "; ".join(problems))
        self.name, self.problems = name, list(problems)


def convert_video(video: SourceVideo, output: Path) -> VideoRecord:
    """Write ``video`` into ``output/JPEGImages/<name>/`` and ``output/Annotations/<name>/``.

    Raises:
        VideoProblems: Anything about the video is wrong (the caller removes what was written).

    """
    problems = list(video.problems)
    try:
        check_name(video.name)
    except DataError as exc:
        raise VideoProblems(video.name, [str(exc)]) from None
    if not video.frames:
        raise VideoProblems(video.name, [*problems, f"{video.source} has no frames (.jpg, .jpeg or .png)"])

    width = stem_width([frame.number for frame in video.frames])
    frame_dir, mask_dir = output / FRAMES_DIR / video.name, output / MASKS_DIR / video.name
    frame_dir.mkdir(parents=True, exist_ok=True)
    size: tuple[int, int] | None = None
    stems: list[str] = []
    annotated: list[str] = []
    objects: dict[int, list[str]] = {}
    for frame in video.frames:
        if len(problems) >= MAX_PROBLEMS_PER_VIDEO:
            problems.append("(further problems of this video not listed)")
            break
        stem = frame_stem(frame.number, width)
        try:
            pixels, labels, has_exif_rotation = _load(frame, size)
        except ImageProblem as exc:
            problems.append(str(exc))
            continue
        if size is None:
            size = (pixels.shape[0], pixels.shape[1])
        stems.append(stem)
        _write_pixels(frame, pixels, frame_dir / f"{stem}{FRAME_SUFFIX}", has_exif_rotation)
        if labels is not None:
            write_label_mask(mask_dir / f"{stem}{MASK_SUFFIX}", labels)
            annotated.append(stem)
            for object_id in object_ids(labels):
                objects.setdefault(object_id, []).append(stem)

    if not problems:
        if not annotated:
            problems.append(f"{video.source} has no annotated frame (no mask files)")
        elif not any(annotated[0] in frames for frames in objects.values()):
            problems.append(
                f"the first annotated frame of {video.source} ({annotated[0]}) shows no object; "
                "tracking needs the objects on the first annotated frame"
            )
    if problems:
        raise VideoProblems(video.name, problems)
    assert size is not None
    return VideoRecord(
        frames=stems,
        annotated=annotated,
        objects=dict(sorted(objects.items())),
        height=size[0],
        width=size[1],
        source=video.source,
        kind=video.kind,
        object_sources={k: v for k, v in video.object_sources.items() if k in objects},
    )


def _load(frame: SourceFrame, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Decode a frame and its mask; pick the orientation the mask was drawn on; check sizes.

    Returns:
        The pixels to write, the label map (None when unannotated), and whether the file has an
        EXIF orientation (then it must be re-encoded, whichever orientation was picked).

    """
    if isinstance(frame.image, Path):
        stored, rotated = read_frame(frame.image, frame.label)
    else:
        stored, rotated = frame.image()
    labels = None
    if frame.mask is not None:
        labels = (
            read_label_mask(frame.mask, str(frame.mask))
            if isinstance(frame.mask, Path)
            else frame.mask(stored.shape[0], stored.shape[1])
        )
    pixels = stored
    if rotated is not None and rotated.shape == stored.shape:
        raise ImageProblem(
            f"frame {frame.label} has an EXIF orientation that keeps its width and height (a square frame, "
            "a flip or a half turn), so its mask cannot tell whether it was drawn on the stored or the "
            "displayed pixels; save the frame upright without the EXIF orientation tag"
        )
    if rotated is not None:
        # The file carries an EXIF orientation: use the upright image unless the mask was drawn on
        # the stored pixels (or, without a mask, the video's frames are known to be stored-size).
        reference = labels.shape if labels is not None else size
        pixels = stored if reference is not None and tuple(reference[:2]) == stored.shape[:2] else rotated
    height, width = pixels.shape[:2]
    if labels is not None and labels.shape != (height, width):
        where = frame.mask if isinstance(frame.mask, Path) else frame.label
        raise ImageProblem(
            f"mask {where} is {labels.shape[1]}x{labels.shape[0]} but its frame {frame.label} is {width}x{height}"
        )
    if size is not None and (height, width) != size:
        raise ImageProblem(
            f"frame {frame.label} is {width}x{height} but the video's earlier frames are {size[1]}x{size[0]}"
        )
    return pixels, labels, rotated is not None


def _write_pixels(frame: SourceFrame, pixels: np.ndarray, path: Path, has_exif_rotation: bool) -> None:
    source = frame.image
    if isinstance(source, Path) and not has_exif_rotation and is_plain_jpeg(source):
        shutil.copyfile(source, path)  # already a plain JPEG, nothing changed: keep the original bytes
    else:
        write_frame(path, pixels)  # re-encoded without EXIF, so every reader sees these pixels


def split_videos(
    names: Sequence[str], val_fraction: float, val_videos: Sequence[str] = (), seed: int = 0
) -> dict[str, list[str]]:
    """Split video names into train and val, reproducibly.

    ``val_videos`` names the validation videos explicitly; otherwise ``val_fraction`` of the
    videos are drawn with ``seed``: a fraction between 0 and 1 holds out at least one video and
    trains on at least one when there are two or more, and 1.0 holds out every video (a test set).

    Raises:
        UsageError: ``val_videos`` names a video that is not there.

    """
    ordered = sorted(names)
    if val_videos:
        unknown = sorted(set(val_videos) - set(ordered))
        if unknown:
            raise UsageError(f"--val-videos names videos that are not in the data: {', '.join(unknown)}")
        val = set(val_videos)
    else:
        count = round(val_fraction * len(ordered))
        if 0 < val_fraction < 1 and len(ordered) >= 2:
            count = min(max(count, 1), len(ordered) - 1)
        val = set(random.Random(seed).sample(ordered, count))
    return {"train": [n for n in ordered if n not in val], "val": [n for n in ordered if n in val]}
