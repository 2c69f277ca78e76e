"""DAVIS 2016/2017 reader.

Frames in ``JPEGImages/<480p|Full-Resolution>/<video>/``, palette (2017) or binary (2016) PNGs in
``Annotations/<resolution>/<video>/``, optional ``ImageSets/<year>/{train,val}.txt`` split lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sam2tool.data.formats.base import SourceVideo, frames_with_masks
from sam2tool.data.layout import natural_key
from sam2tool.errors import DataError

RESOLUTIONS = ("480p", "Full-Resolution")


class DavisFormat:
    """Reader of the DAVIS layout."""

    name = "davis"

    def __init__(self, resolution: str | None = None) -> None:
        self.resolution = resolution

    def _folders(self, source: Path) -> tuple[Path, Path]:
        images, masks = source / "JPEGImages", source / "Annotations"
        if not images.is_dir():
            raise DataError(f"{source} has no JPEGImages/ folder; is it a DAVIS data set?")
        resolutions = [self.resolution] if self.resolution else [r for r in RESOLUTIONS if (images / r).is_dir()]
        for resolution in resolutions:
            if (images / resolution).is_dir():
                return images / resolution, masks / resolution
        if self.resolution:
            raise DataError(f"{images} has no {self.resolution}/ folder")
        return images, masks  # a DAVIS-like layout without the resolution level

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """One video per folder of JPEGImages/<resolution>/."""
        image_root, mask_root = self._folders(source)
        for folder in sorted((p for p in image_root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
            frames, problems = frames_with_masks(folder, mask_root / folder.name, source)
            yield SourceVideo(folder.name, str(folder.relative_to(source)), frames, problems=problems)

    @staticmethod
    def splits(source: Path) -> dict[str, list[str]]:
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
