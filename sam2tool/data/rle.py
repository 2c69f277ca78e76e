"""COCO run-length encoding (RLE) of binary masks, compatible with pycocotools.

Masks are run-length encoded in column-major order, starting with a run of zeros. ``counts`` is
either a list of run lengths or the compressed string form (6-bit groups offset by 48, each run
after the second stored as the difference to the run two before).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def decode_counts(text: str) -> list[int]:
    """Decompress a COCO RLE counts string into run lengths."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("truncated RLE counts string")
            chunk = ord(text[position]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            position += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_counts(counts: Sequence[int]) -> str:
    """Compress run lengths into a COCO RLE counts string."""
    chars: list[str] = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            if more:
                chunk |= 0x20
            chars.append(chr(chunk + 48))
    return "".join(chars)


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decode ``{"size": [h, w], "counts": ...}`` into a bool mask (h, w).

    Raises:
        ValueError: The runs do not add up to ``h * w`` or the counts are malformed.

    """
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = (
        decode_counts(counts if isinstance(counts, str) else counts.decode("ascii"))
        if isinstance(counts, (str, bytes))
        else [int(c) for c in counts]
    )
    if sum(runs) != height * width or any(r < 0 for r in runs):
        raise ValueError(f"RLE runs add up to {sum(runs)} pixels, but the mask has {height}x{width}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T.copy()


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a bool mask (h, w) as compressed COCO RLE."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": encode_counts(runs)}


def polygon_runs(xy: Sequence[float], height: int, width: int) -> list[int]:
    """Run lengths of one COCO polygon ``[x1, y1, x2, y2, ...]``, exactly as pycocotools' ``frPoly``.

    The boundary is traced at 5x resolution, the crossings of pixel columns are taken back to the
    pixel grid, and the runs between them alternate outside/inside.
    """
    count = len(xy) // 2
    scale = 5.0
    xs_ = [int(scale * xy[2 * j] + 0.5) for j in range(count)]
    ys_ = [int(scale * xy[2 * j + 1] + 0.5) for j in range(count)]
    xs_.append(xs_[0])
    ys_.append(ys_[0])
    u: list[int] = []
    v: list[int] = []
    for j in range(count):
        x0, x1, y0, y1 = xs_[j], xs_[j + 1], ys_[j], ys_[j + 1]
        dx, dy = abs(x1 - x0), abs(y0 - y1)
        flip = (dx >= dy and x0 > x1) or (dx < dy and y0 > y1)
        if flip:
            x0, x1, y0, y1 = x1, x0, y1, y0
        if dx >= dy:
            slope = (y1 - y0) / dx if dx else 0.0
            for d in range(dx + 1):
                t = dx - d if flip else d
                u.append(t + x0)
                v.append(int(y0 + slope * t + 0.5))
        else:
            slope = (x1 - x0) / dy
            for d in range(dy + 1):
                t = dy - d if flip else d
                v.append(t + y0)
                u.append(int(x0 + slope * t + 0.5))
    starts: list[int] = []
    for j in range(1, len(u)):
        if u[j] == u[j - 1]:
            continue
        xd = (float(u[j] if u[j] < u[j - 1] else u[j] - 1) + 0.5) / scale - 0.5
        if math.floor(xd) != xd or xd < 0 or xd > width - 1:
            continue
        yd = (float(v[j] if v[j] < v[j - 1] else v[j - 1]) + 0.5) / scale - 0.5
        yd = math.ceil(min(max(yd, 0.0), float(height)))
        starts.append(int(xd) * height + int(yd))
    starts.append(height * width)
    starts.sort()
    gaps, previous = [], 0
    for position in starts:
        gaps.append(position - previous)
        previous = position
    runs = [gaps[0]]
    index = 1
    while index < len(gaps):
        if gaps[index] > 0:
            runs.append(gaps[index])
            index += 1
        else:  # two crossings at one pixel cancel out
            index += 1
            if index < len(gaps):
                runs[-1] += gaps[index]
                index += 1
    return runs


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ``[[x1, y1, ...], ...]`` into a bool mask (h, w), as pycocotools does."""
    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        if len(polygon) >= 6:
            runs = polygon_runs([float(c) for c in polygon], height, width)
            mask |= decode_rle({"size": [height, width], "counts": runs})
    return mask
