"""Rendering the videos of the synthetic format (:mod:`sam2tool.data.formats.synthetic`).

Every object keeps its own colour and pattern for the whole video; the same seed gives the same
videos. Imported only when videos are generated (numpy): the format itself is listed by ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sam2tool.data.formats.synthetic import DEFAULT_OBJECTS

_SHAPES = ("ellipse", "rectangle", "triangle", "diamond")
_PATTERNS = ("stripes", "checker", "dots", "solid")
#: Camouflage: a background patch takes the hue of one of the objects, give or take this.
_CAMO_HUE_SPREAD = 0.06
#: Camouflage: how much brighter (HSV value) an object is than the background's patches. The packaged
#: base, which learned objects by colour and pattern, scores 0.41-0.60 J&F on the demo's test videos of
#: seeds 0-4; fine-tuning learns the cue (0.90-0.92).
_CAMO_LIFT = 0.6
#: Camouflage: patches of the background mosaic along each side of the frame.
_CAMO_CELLS = 3
#: Camouflage: start positions drawn at most this many times to find one where objects are apart.
_START_TRIES = 200


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


class LazyVideo:
    """Renders a synthetic video on first use and hands out its frames and masks."""

    def __init__(self, index: int, frames: int, size: int, seed: int, objects: tuple[int, int], style: str) -> None:
        self.args = (index, frames, size, seed, objects, style)
        self.rendered: tuple[np.ndarray, np.ndarray] | None = None

    def _video(self) -> tuple[np.ndarray, np.ndarray]:
        if self.rendered is None:
            self.rendered = render_video(*self.args)
        return self.rendered

    def close(self) -> None:
        """Drop the rendered frames."""
        self.rendered = None

    def image(self, t: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame ``t`` (a frame loader's result: no EXIF rotation)."""
        return self._video()[0][t], None

    def mask(self, t: int, height: int, width: int) -> np.ndarray:
        """The label map of frame ``t``."""
        labels: np.ndarray = self._video()[1][t]
        return labels


def render_video(
    index: int,
    frames: int,
    size: int,
    seed: int,
    objects: tuple[int, int] = DEFAULT_OBJECTS,
    style: str = "shapes",
) -> tuple[np.ndarray, np.ndarray]:
    """Render one video: RGB frames (T, S, S, 3) uint8 and label maps (T, S, S) uint8.

    ``objects`` is the range (inclusive) the number of objects of each video is drawn from.
    """
    rng = np.random.default_rng([seed, index])
    count = int(rng.integers(2, 4))  # the default draw, kept first so that the other draws stay as they were
    if objects != DEFAULT_OBJECTS:
        low, high = objects
        count = int(np.random.default_rng([seed, index, 2]).integers(low, high + 1))
    # Hues are spread evenly over the objects of a video, from a start drawn per video (from its own
    # generator, so that every other draw stays as it was). A camouflage background is made of patches
    # in the objects' hues.
    first_hue = float(np.random.default_rng([seed, index, 1]).uniform())
    camouflage = style == "camouflage"
    hues = [(first_hue + i / count) % 1.0 for i in range(count)]
    shapes = [_random_object(rng, size, hue, _CAMO_LIFT if camouflage else None) for hue in hues]
    order = rng.permutation(count)  # back to front
    background = _camouflage_background(rng, size, hues) if camouflage else _background(rng, size)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if camouflage:  # objects start apart: each is whole where it is prompted (its own generator, as above)
        shapes = _apart_at_start(shapes, size, xs, ys, np.random.default_rng([seed, index, 3]))
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


def _random_object(
    rng: np.random.Generator, size: int, base_hue: float, lift: float | None = None, hue_jitter: float = 0.08
) -> _Object:
    """An object (or a camouflage background patch) of a hue near ``base_hue``.

    ``lift`` None gives the shapes style's vivid colours; a number gives camouflage colours, those of
    a background patch made ``lift`` brighter (0 for a patch itself).
    """
    hue = (base_hue + rng.uniform(-hue_jitter, hue_jitter)) % 1.0
    camouflage = lift is not None
    if lift is not None:  # not `camouflage`: mypy narrows lift only here
        colour, second = _patch_colours(rng, hue, lift)
    else:
        colour = _hsv_to_rgb(hue, rng.uniform(0.6, 0.9), rng.uniform(0.7, 1.0))
        second = _hsv_to_rgb((hue + 0.5) % 1.0, rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.5))
    speed = rng.uniform(0.015, 0.04) * size
    direction = rng.uniform(0, 2 * np.pi)
    return _Object(
        shape=_SHAPES[int(rng.integers(len(_SHAPES)))],
        pattern=_PATTERNS[int(rng.integers(len(_PATTERNS) - (1 if camouflage else 0)))],  # camouflage: never solid
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


def _apart_at_start(
    shapes: list[_Object], size: int, xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator
) -> list[_Object]:
    """The objects moved to start positions where none covers another in the first frame.

    Positions are drawn in the middle of the frame until the objects' first-frame footprints are
    disjoint; after ``_START_TRIES`` draws the last one stands (1 to 3 objects are placed apart within
    a few draws; 6 or more may not fit apart).
    """
    moved = shapes
    for _ in range(_START_TRIES):
        moved = [replace(obj, start=rng.uniform(0.2, 0.8, size=2) * size) for obj in shapes]
        if np.sum([_footprint(obj, 0, size, xs, ys)[0] for obj in moved], axis=0).max() <= 1:
            break
    return moved


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


def _patch_colours(rng: np.random.Generator, hue: float, lift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Main and pattern colour of a camouflage patch (or, ``lift`` brighter, of an object): one hue family."""
    colour = _hsv_to_rgb(hue, rng.uniform(0.3, 0.55) + lift / 2, rng.uniform(0.4, 0.65) + lift)
    second = _hsv_to_rgb((hue + rng.uniform(-0.04, 0.04)) % 1.0, rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4))
    return colour, second


def _camouflage_background(rng: np.random.Generator, size: int, hues: list[float]) -> np.ndarray:
    """A mosaic of patterned patches (Voronoi cells), each in the hue of one of the objects."""
    cells = _CAMO_CELLS**2
    centres = rng.uniform(0, size, size=(cells, 2))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    nearest = np.argmin((xs[..., None] - centres[:, 0]) ** 2 + (ys[..., None] - centres[:, 1]) ** 2, axis=-1)
    image = np.empty((size, size, 3), dtype=np.float32)
    for cell in range(cells):
        inside = nearest == cell
        patch_hue = (hues[int(rng.integers(len(hues)))] + rng.uniform(-_CAMO_HUE_SPREAD, _CAMO_HUE_SPREAD)) % 1.0
        patch = _random_object(rng, size, patch_hue, lift=0.0, hue_jitter=0.0)
        cos, sin = np.cos(patch.angle), np.sin(patch.angle)
        scale = patch.radius
        u = (cos * xs[inside] + sin * ys[inside]) / scale
        v = (-sin * xs[inside] + cos * ys[inside]) / scale
        image[inside] = _texture(patch, u, v)
    noise = rng.normal(0, 0.015, size=(size, size, 1)).astype(np.float32)
    return np.asarray(np.clip(image + noise, 0, 1), dtype=np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)
