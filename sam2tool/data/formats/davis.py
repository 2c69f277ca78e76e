"""DAVIS 2016/2017 reader.

Frames in ``JPEGImages/<480p|Full-Resolution>/<video>/``, palette (2017) or binary (2016) PNGs in
``Annotations/<resolution>/<video>/``, optional ``ImageSets/<year>/{train,val}.txt`` split lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sam2tool.data.formats.base import SourceFormat, SourceVideo, frames_with_masks, option
from sam2tool.data.layout import natural_key
from sam2tool.errors import DataError

RESOLUTIONS = ("480p", "Full-Resolution")


@dataclass(frozen=True)
class DavisOptions:
    """Options of the DAVIS format."""

    resolution: str | None = option("DAVIS: 480p or Full-Resolution (default: 480p if present).")


class DavisFormat(SourceFormat[DavisOptions]):
    """Reader of the DAVIS layout; its ImageSets lists are the data set's own split."""

    name = "davis"
    summary = "DAVIS 2016/2017 (JPEGImages/480p/<video>/, Annotations/480p/<video>/, ImageSets/)"
    Options = DavisOptions

    def _folders(self, source: Path) -> tuple[Path, Path]:
        images, masks = source / "JPEGImages", source / "Annotations"
        if not images.is_dir():
            raise DataError(f"{source} has no JPEGImages/ folder; is it a DAVIS data set?")
        chosen = self.options.resolution
        resolutions = [chosen] if chosen else [r for r in RESOLUTIONS if (images / r).is_dir()]
        for resolution in resolutions:
            if (images / resolution).is_dir():
                return images / resolution, masks / resolution
        if chosen:
            raise DataError(f"{images} has no {chosen}/ folder")
        return images, masks  # a DAVIS-like layout without the resolution level

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """One video per folder of JPEGImages/<resolution>/."""
        image_root, mask_root = self._folders(source)
        for folder in sorted((p for p in image_root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
            frames, problems = frames_with_masks(folder, mask_root / folder.name, source)
            yield SourceVideo(folder.name, str(folder.relative_to(source)), frames, problems=problems)

    def splits(self, source: Path) -> dict[str, list[str]]:
        """The train/val lists of ``ImageSets/<year>/`` (newest year), if the data set has them."""
        image_sets = source / "ImageSets"
        years = (
            sorted((p for p in image_sets.iterdir() if p.is_dir()), key=lambda p: p.name) if image_sets.is_dir() else []
        )
        for year in reversed(years):
            found = {
                split: [line.strip() for line in (year / f"{split}.txt").read_text().splitlines() if line.strip()]
                for split in ("train", "val")
                if (year / f"{split}.txt").is_file()
            }
            if found:
                return found
        return {}
