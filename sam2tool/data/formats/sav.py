"""SA-V reader: ``<video>.mp4`` with ``<video>_manual.json`` masklets (COCO RLE).

SA-V videos are 24 fps and annotated at 6 fps: ``masklet[k]`` holds the masks of every object on
video frame ``k * stride`` (stride 4, or ``video_frame_count / len(masklet)`` when that is what the
file says). Only annotated frames are written unless ``all_frames`` is set, in which case the
frames between them are kept too, marked unannotated. Frames are decoded sequentially with OpenCV,
one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2tool.data.formats.base import SourceFormat, SourceFrame, SourceVideo, option
from sam2tool.data.layout import MAX_OBJECT_ID, natural_key
from sam2tool.errors import DataError

if TYPE_CHECKING:  # imported where used: this module is imported to list the formats in --help
    import numpy as np

    from sam2tool.data.video_file import VideoFileReader

ANNOTATION_STRIDE = 4
_SUFFIXES = ("_manual.json", "_auto.json")


@dataclass(frozen=True)
class SavOptions:
    """Options of the SA-V format."""

    all_frames: bool = option("SA-V: also write the unannotated frames (24 fps instead of 6).", False)


class SavFormat(SourceFormat[SavOptions]):
    """Reader of the SA-V layout."""

    name = "sav"
    summary = "SA-V (<video>.mp4 + <video>_manual.json masklets, 24 fps video annotated at 6 fps)"
    Options = SavOptions

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """One video per ``*_manual.json`` (or ``*_auto.json`` when there is no manual file)."""
        from sam2tool.data.video_file import VideoFileReader

        annotations = sorted(source.rglob("*_manual.json"), key=lambda p: natural_key(str(p)))
        manual = {p.name[: -len("_manual.json")] for p in annotations}
        annotations += [p for p in sorted(source.rglob("*_auto.json")) if p.name[: -len("_auto.json")] not in manual]
        if not annotations:
            raise DataError(f"{source} has no <video>_manual.json files; is it an SA-V folder?")
        for path in annotations:
            stem = next(path.name[: -len(s)] for s in _SUFFIXES if path.name.endswith(s))
            video_file = path.with_name(f"{stem}.mp4")
            label = str(path.relative_to(source))
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                masklets: list[list[dict[str, Any]]] = data["masklet"]
                ids = [str(i) for i in data.get("masklet_id", range(len(masklets[0]) if masklets else 0))]
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                yield SourceVideo(stem, label, [], problems=[f"{label} is not SA-V masklet JSON ({exc})"])
                continue
            if not video_file.is_file():
                yield SourceVideo(stem, label, [], problems=[f"{label} has no video {video_file.name} beside it"])
                continue
            reader = VideoFileReader(video_file)
            frame_count = int(data.get("video_frame_count") or reader.frame_count() or 0)
            stride = _stride(frame_count, len(masklets))
            annotated = {k * stride: k for k in range(len(masklets))}
            numbers = range(frame_count) if self.options.all_frames and frame_count else sorted(annotated)
            frames = [
                SourceFrame(
                    n,
                    f"{video_file.relative_to(source)} frame {n}",
                    _FrameLoader(reader, n),
                    _MaskletPainter(masklets[annotated[n]], label, n) if n in annotated else None,
                )
                for n in numbers
            ]
            problems = []
            if len(ids) > MAX_OBJECT_ID:
                problems.append(f"{label} has {len(ids)} masklets; at most {MAX_OBJECT_ID} fit a palette PNG")
            yield SourceVideo(
                stem,
                str(video_file.relative_to(source)),
                frames,
                problems=problems,
                object_sources={k + 1: i for k, i in enumerate(ids)},
                close=reader.close,
            )


def _stride(frame_count: int, annotated: int) -> int:
    if frame_count and annotated and frame_count // annotated in (ANNOTATION_STRIDE - 1, ANNOTATION_STRIDE):
        return ANNOTATION_STRIDE
    if frame_count and annotated:
        return max(1, round(frame_count / annotated))
    return ANNOTATION_STRIDE


class _FrameLoader:
    def __init__(self, reader: VideoFileReader, index: int) -> None:
        self.reader, self.index = reader, index

    def __call__(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.reader.read(self.index), None


class _MaskletPainter:
    """Label map of one annotated frame: object k+1 where masklet k is on (later ones on top)."""

    def __init__(self, rles: list[dict[str, Any]], label: str, frame: int) -> None:
        self.rles, self.label, self.frame = rles, label, frame

    def __call__(self, height: int, width: int) -> np.ndarray:
        import numpy as np

        from sam2tool.data.images import ImageProblem
        from sam2tool.data.rle import decode_rle

        labels = np.zeros((height, width), dtype=np.uint8)
        if len(self.rles) > MAX_OBJECT_ID:
            raise ImageProblem(f"{self.label} has {len(self.rles)} masklets; at most {MAX_OBJECT_ID} fit a palette PNG")
        for k, rle in enumerate(self.rles):
            try:
                mask = decode_rle(rle)
            except (ValueError, TypeError, KeyError) as exc:
                raise ImageProblem(
                    f"{self.label}: mask of object {k + 1} on frame {self.frame} is not RLE ({exc})"
                ) from None
            if mask.shape != (height, width):
                raise ImageProblem(
                    f"{self.label}: masks are {mask.shape[1]}x{mask.shape[0]} but the video is {width}x{height}"
                )
            labels[mask] = k + 1
        return labels
