"""Small source data sets written by the tests themselves (DAVIS and YouTube-VOS layouts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from sam2tool.data.images import write_label_mask


def frame_pixels(t: int, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, t])
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def labels(t: int, height: int = 24, width: int = 32, objects: int = 2) -> np.ndarray:
    out = np.zeros((height, width), dtype=np.uint8)
    for k in range(objects):
        top = 2 + 6 * k
        out[top : top + 4, 2 + t : 8 + t] = k + 1
    return out


def write_video(
    images: Path,
    masks: Path | None,
    frames: int = 4,
    annotated: list[int] | None = None,
    names: list[str] | None = None,
    objects: int = 2,
) -> None:
    images.mkdir(parents=True, exist_ok=True)
    names = names or [f"{t:05d}" for t in range(frames)]
    for t, name in enumerate(names):
        Image.fromarray(frame_pixels(t)).save(images / f"{name}.jpg", quality=90)
        if masks is not None and (annotated is None or t in annotated):
            write_label_mask(masks / f"{name}.png", labels(t, objects=objects))


def binary_mask(t: int, dtype: type[np.integer] = np.uint8) -> np.ndarray:
    """One object of ``labels`` in black (0) and white (255), as binary mask files draw it."""
    return ((labels(t, objects=1) > 0) * 255).astype(dtype)


def write_video_with_masks(
    images: Path, masks: Path, mask: Callable[[int], np.ndarray] = binary_mask, frames: int = 2
) -> None:
    """The frames of ``write_video``, and ``mask(t)`` saved as it is to ``masks/<t:05d>.png`` for each frame t."""
    write_video(images, None, frames)
    masks.mkdir(parents=True)
    for t in range(frames):
        Image.fromarray(mask(t)).save(masks / f"{t:05d}.png")


def make_davis(root: Path, videos: tuple[str, ...] = ("bear", "car"), frames: int = 4) -> Path:
    for video in videos:
        write_video(root / "JPEGImages" / "480p" / video, root / "Annotations" / "480p" / video, frames)
    return root


def make_ytvos(root: Path, videos: tuple[str, ...] = ("a1", "b2"), frames: int = 10, every: int = 5) -> Path:
    for video in videos:
        write_video(
            root / "JPEGImages" / video, root / "Annotations" / video, frames, annotated=list(range(0, frames, every))
        )
    return root
