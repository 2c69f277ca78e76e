"""The frames of a video, read one at a time: a folder of images or a video file (no torch here).

Both trackers read frames through these classes: the PyTorch streaming predictor
(:mod:`sam2tool.models.streaming`) and the onnxruntime tracker (:mod:`sam2tool.models.onnx_tracker`).
:class:`FramePictures` keeps the last frame read and prepares a frame for the model exactly as
SAM 2's video loader does (PIL resize to a square, /255).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from sam2tool.data.images import ImageProblem
from sam2tool.data.layout import natural_key
from sam2tool.data.video_file import VideoFileReader
from sam2tool.errors import DataError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


class FrameSource(Protocol):
    """Frames of a video, read one at a time."""

    def __len__(self) -> int:
        """Number of frames."""
        ...

    def read(self, index: int) -> Image.Image:
        """Frame ``index`` as an RGB PIL image."""
        ...


class FolderFrames:
    """A folder of frames (.jpg, .jpeg, .png) in natural order (``2.jpg`` before ``10.jpg``)."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise DataError(f"frames folder {folder} does not exist")
        self.paths = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
            key=lambda p: natural_key(p.name),
        )
        if not self.paths:
            raise DataError(f"{folder} has no frames (.jpg, .jpeg or .png)")
        stems: dict[str, Path] = {}
        for path in self.paths:
            if path.stem in stems:
                raise DataError(
                    f"{stems[path.stem].name} and {path.name} in {folder} are both frame {path.stem}; keep one"
                )
            stems[path.stem] = path

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        """File stem of frame ``index`` (used to name its output mask)."""
        return self.paths[index].stem

    def read(self, index: int) -> Image.Image:
        """Frame ``index`` as an RGB PIL image."""
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError as exc:
            raise DataError(f"frame {path} cannot be read ({exc})") from None


class VideoFileFrames:
    """A video file decoded sequentially with OpenCV (reopened only to go backwards)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = VideoFileReader(path)
        self.count = self.reader.frame_count()
        if self.count <= 0:
            raise DataError(f"video {path} cannot be read or has no frames; is it a video file OpenCV can read?")

    def __len__(self) -> int:
        return self.count

    def name(self, index: int) -> str:
        """Zero-padded frame number."""
        return f"{index:05d}"

    def read(self, index: int) -> Image.Image:
        """Frame ``index`` as an RGB PIL image."""
        try:
            return Image.fromarray(self.reader.read(index))
        except ImageProblem as exc:
            raise DataError(str(exc)) from None


def extract_frames(source: VideoFileFrames, last: int, folder: Path) -> FolderFrames:
    """Decode frames 0..``last`` of a video once, in order, into lossless PNGs.

    A backward pass reads them instead of re-decoding the video from its start for every frame.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(last + 1):
        source.read(index).save(folder / f"{source.name(index)}.png")
    return FolderFrames(folder)


def open_frames(path: Path) -> FolderFrames | VideoFileFrames:
    """Frames from a folder of images or a video file."""
    return FolderFrames(path) if path.is_dir() else VideoFileFrames(path)


class FramePictures:
    """The frames of a video being tracked: the last one read is kept, each is checked for size.

    Attributes:
        source: Where frames are read from (replaced by extracted PNGs for a backward pass over a
            video file).
        video_width: Width of frame 0; every frame must have it.
        video_height: Height of frame 0.

    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._picture: tuple[int, Image.Image] | None = None
        self.video_width, self.video_height = source.read(0).size

    def __len__(self) -> int:
        return len(self.source)

    def picture(self, index: int) -> Image.Image:
        """Frame ``index`` as read from the source (the last one read is kept, not decoded again)."""
        if self._picture is None or self._picture[0] != index:
            self._picture = (index, self.source.read(index))
        return self._picture[1]

    def resized(self, index: int, image_size: int) -> np.ndarray:
        """Frame ``index`` as SAM 2's loader prepares it: ``[S, S, 3]`` float64 in [0, 1] (PIL resize, /255).

        Raises:
            DataError: The frame's size differs from frame 0's.

        """
        image = self.picture(index)
        if image.size != (self.video_width, self.video_height):
            raise DataError(
                f"frame {index} is {image.size[0]}x{image.size[1]} but the video is "
                f"{self.video_width}x{self.video_height}"
            )
        pixels: np.ndarray = np.array(image.resize((image_size, image_size))) / 255.0
        return pixels
