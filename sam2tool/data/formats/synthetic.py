"""A generated data set for demos and tests.

Textured objects move, turn, grow and shrink, occlude each other and leave and re-enter the frame,
over a textured background. Every object keeps its own colour and pattern for the whole video, so tracking by appearance
works: a model can learn it. The same seed gives the same videos.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sam2tool.data.formats.base import SourceFrame, SourceVideo

_SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
_PATTERNS = ("stripes", "checker", "dots", "solid")


@dataclass(frozen=True)
class _Object:
    shape: str
    pattern: str
    colour: np.ndarray  # (3,) float in [0, 1]
    second: np.ndarray  # pattern colour
    frequency: float
    radius: float  # pixels
    start: np.ndarray  # (2,) x, y
    velocity: np.ndarray  # pixels per frame
    angle: float
    spin: float  # radians per frame
    pulse: float  # relative scale amplitude
    phase: float


class SyntheticFormat:
    """Generates videos instead of reading them; ``SOURCE`` is not used."""

    name = "synthetic"

    def __init__(
        self, num_videos: int = 16, frames: int = 24, size: int = 256, seed: int = 0, objects: int | None = None
    ) -> None:
        self.num_videos, self.frames, self.size, self.seed, self.objects = num_videos, frames, size, seed, objects

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """``num_videos`` videos named ``synthetic_000``, ... with every frame annotated."""
        for index in range(self.num_videos):
            video = _LazyVideo(index, self.frames, self.size, self.seed, self.objects)
            frames = [
                SourceFrame(t, f"synthetic video {index} frame {t}", partial(video.image, t), partial(video.mask, t))
                for t in range(self.frames)
            ]
            yield SourceVideo(f"synthetic_{index:03d}", f"generated (seed {self.seed})", frames, close=video.close)


class _LazyVideo:
    """Renders a synthetic video on first use and hands out its frames and masks."""

    def __init__(self, index: int, frames: int, size: int, seed: int, objects: int | None) -> None:
        self.args = (index, frames, size, seed, objects)
        self.rendered: tuple[np.ndarray, np.ndarray] | None = None

    def _video(self) -> tuple[np.ndarray, np.ndarray]:
        if self.rendered is None:
            self.rendered = render_video(*self.args)
        return self.rendered

    def close(self) -> None:
        """Drop the rendered frames."""
        self.rendered = None

    def image(self, t: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self._video()[0][t], None

    def mask(self, t: int, height: int, width: int) -> np.ndarray:
        labels: np.ndarray = self._video()[1][t]
        return labels


def render_video(
    index: int, frames: int, size: int, seed: int, objects: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render one video: RGB frames (T, S, S, 3) uint8 and label maps (T, S, S) uint8.

    ``objects`` fixes the number of objects (default: 2 or 3, drawn per video).
    """
    rng = np.random.default_rng([seed, index])
    count = int(rng.integers(2, 4))  # drawn even when fixed, so the other draws do not change
    count = count if objects is None else objects
    # Hues are spread evenly over the objects of a video, from a start drawn per video (from its own
    # generator, so that every other draw stays as it was).
    first_hue = float(np.random.default_rng([seed, index, 1]).uniform())
    shapes = [_random_object(rng, size, (first_hue + i / count) % 1.0) for i in range(count)]
    order = rng.permutation(count)  # back to front
    background = _background(rng, size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((frames, size, size, 3), dtype=np.uint8)
    labels = np.zeros((frames, size, size), dtype=np.uint8)
    for t in range(frames):
        canvas = background.copy()
        label = labels[t]
        for i in order:
            obj = shapes[i]
            inside, u, v = _footprint(obj, t, size, xs, ys)
            canvas[inside] = _texture(obj, u[inside], v[inside])
            label[inside] = i + 1
        images[t] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return images, labels


def _random_object(rng: np.random.Generator, size: int, base_hue: float) -> _Object:
    hue = (base_hue + rng.uniform(-0.08, 0.08)) % 1.0
    colour = _hsv_to_rgb(hue, rng.uniform(0.6, 0.9), rng.uniform(0.7, 1.0))
    second = _hsv_to_rgb((hue + 0.5) % 1.0, rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5))
    speed = rng.uniform(0.015, 0.04) * size
    direction = rng.uniform(0, 2 * np.pi)
    return _Object(
        shape=_SHAPES[int(rng.integers(len(_SHAPES)))],
        pattern=_PATTERNS[int(rng.integers(len(_PATTERNS)))],
        colour=colour,
        second=second,
        frequency=float(rng.uniform(2.0, 4.0)),
        radius=float(rng.uniform(0.12, 0.2) * size),
        start=rng.uniform(0.25, 0.75, size=2) * size,  # starts inside the frame
        velocity=np.array([np.cos(direction), np.sin(direction)]) * speed,
        angle=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.uniform(-0.08, 0.08)),
        pulse=float(rng.uniform(0.1, 0.3)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


def _position(obj: _Object, t: int, size: int) -> np.ndarray:
    """Straight motion that bounces inside a box larger than the frame: objects leave and come back."""
    low, high = -0.35 * size, 1.35 * size
    span = high - low
    raw = obj.start + obj.velocity * t - low
    folded = np.mod(raw, 2 * span)
    return np.asarray(low + np.where(folded > span, 2 * span - folded, folded), dtype=np.float64)


def _footprint(obj: _Object, t: int, size: int, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, ...]:
    centre = _position(obj, t, size)
    scale = obj.radius * (1.0 + obj.pulse * np.sin(0.3 * t + obj.phase))
    angle = obj.angle + obj.spin * t
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = xs - centre[0], ys - centre[1]
    u = (cos * dx + sin * dy) / scale
    v = (-sin * dx + cos * dy) / scale
    if obj.shape == "ellipse":
        inside = u**2 + (v / 0.7) ** 2 <= 1.0
    elif obj.shape == "rectangle":
        inside = (np.abs(u) <= 1.0) & (np.abs(v) <= 0.6)
    elif obj.shape == "triangle":
        inside = (v <= 0.8) & (v >= 1.6 * np.abs(u) - 0.8)
    else:
        inside = np.abs(u) + np.abs(v) <= 1.0
    return inside, u, v


def _texture(obj: _Object, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if obj.pattern == "stripes":
        mix = (np.sin(obj.frequency * np.pi * u) > 0).astype(np.float32)
    elif obj.pattern == "checker":
        mix = ((np.floor(obj.frequency * u) + np.floor(obj.frequency * v)) % 2).astype(np.float32)
    elif obj.pattern == "dots":
        mix = ((np.sin(obj.frequency * np.pi * u) * np.sin(obj.frequency * np.pi * v)) > 0.4).astype(np.float32)
    else:
        mix = np.zeros_like(u)
    return np.asarray(obj.colour * (1.0 - mix[:, None] * 0.6) + obj.second * (mix[:, None] * 0.6), dtype=np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth low-contrast colour noise with faint diagonal texture, values in [0, 1]."""
    coarse = rng.uniform(0.25, 0.6, size=(5, 5, 3)).astype(np.float32)
    grid = np.linspace(0, 4, size, dtype=np.float32)
    i0 = np.clip(np.floor(grid).astype(int), 0, 3)
    f = (grid - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # (size, 5, 3)
    g = (grid - i0)[None, :, None]
    image = rows[:, i0] * (1 - g) + rows[:, i0 + 1] * g
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = 0.04 * np.sin((xs + ys) * (2 * np.pi / max(size / 12, 1)))[..., None]
    noise = rng.normal(0, 0.015, size=(size, size, 1)).astype(np.float32)
    return np.asarray(np.clip(image + texture + noise, 0, 1), dtype=np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)
