"""YouTube-VOS and MOSE reader.

Frames in ``JPEGImages/<video>/``, palette PNGs in ``Annotations/<video>/``, possibly sparse
(YouTube-VOS annotates every 5th frame), with an optional ``meta.json`` naming object categories.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sam2tool.data.formats.base import NoOptions, SourceFormat, SourceVideo, frames_with_masks
from sam2tool.data.layout import natural_key
from sam2tool.errors import DataError


class YouTubeVOSFormat(SourceFormat[NoOptions]):
    """Reader of the YouTube-VOS / MOSE layout."""

    name = "ytvos"
    summary = "YouTube-VOS / MOSE (JPEGImages/<video>/, Annotations/<video>/, optional meta.json)"

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """One video per folder of JPEGImages/; frames without a PNG are kept, marked unannotated."""
        images = source / "JPEGImages"
        if not images.is_dir():
            raise DataError(f"{source} has no JPEGImages/ folder; is it a YouTube-VOS or MOSE data set?")
        meta = _read_meta(source)
        for folder in sorted((p for p in images.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
            frames, problems = frames_with_masks(folder, source / "Annotations" / folder.name, source)
            entry = meta.get(folder.name)
            objects = entry.get("objects") if isinstance(entry, dict) else None
            names = {
                int(k): str(v.get("category", k))
                for k, v in (objects.items() if isinstance(objects, dict) else ())
                if str(k).isdigit() and isinstance(v, dict)
            }
            yield SourceVideo(
                folder.name, str(folder.relative_to(source)), frames, problems=problems, object_sources=names
            )


def _read_meta(source: Path) -> dict[str, Any]:
    path = source / "meta.json"
    if not path.is_file():
        return {}
    try:
        videos = json.loads(path.read_text(encoding="utf-8")).get("videos", {})
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{path} is not valid YouTube-VOS meta JSON ({exc})") from None
    return videos if isinstance(videos, dict) else {}
