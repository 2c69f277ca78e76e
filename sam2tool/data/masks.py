"""A folder of one video's label-map PNGs, read one frame at a time.

:class:`MaskFolder` is the reader that :func:`sam2tool.metrics.evaluation.score_video` takes for
ground truth and predictions (it walks no folders itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam2tool.data.images import ImageProblem, read_label_mask
from sam2tool.data.layout import MASK_SUFFIX, natural_key
from sam2tool.errors import DataError


class MaskFolder:
    """``<folder>/<frame>.png`` label maps of one video.

    Args:
        folder: The video's mask folder.
        what: What the masks are, for messages (``ground truth``, ``prediction``).

    """

    def __init__(self, folder: Path, what: str) -> None:
        self.folder, self.what = folder, what

    @property
    def name(self) -> str:
        """The folder, as messages name it."""
        return str(self.folder)

    def exists(self) -> bool:
        """Whether the folder exists."""
        return self.folder.is_dir()

    def frames(self) -> list[str]:
        """Names (stems) of the frames that have a PNG, in natural order."""
        return sorted((p.stem for p in self.folder.glob(f"*{MASK_SUFFIX}")), key=natural_key)

    def where(self, frame: str) -> str:
        """The file of ``frame``'s label map, as messages name it."""
        return str(self.folder / f"{frame}{MASK_SUFFIX}")

    def read(self, frame: str) -> np.ndarray | None:
        """``frame``'s label map, or None when it has no file.

        Raises:
            DataError: The file cannot be decoded as a label map.

        """
        path = self.folder / f"{frame}{MASK_SUFFIX}"
        if not path.is_file():
            return None
        try:
            return read_label_mask(path)
        except ImageProblem as exc:
            raise DataError(f"{self.what} {exc}") from None
