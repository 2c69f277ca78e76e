"""PyTorch's bilinear resizes in numpy, so that a tracker without torch computes what SAM 2 computes.

SAM 2's video predictor resizes masks with ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``: low-resolution logits up to the model's input size (to encode memory) and
to the video's size (the output), and a mask prompt down to the input size with
``antialias=True``. Both are separable, so each is one weight matrix per axis:
``out = rows @ image @ cols.T``. The weights are PyTorch's (``UpSampleKernel.cpp``; the antialiased
one is Pillow's triangle filter) with the source positions computed in float32 as torch's CPU
kernel computes them; results agree with torch to float32 rounding.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` weights of torch's bilinear interpolation, ``align_corners=False``, no antialias."""
    scale = np.float32(in_size) / np.float32(out_size)  # float32 index arithmetic, as torch's CPU kernel
    source = np.maximum(scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    low = np.minimum(source.astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = (source - low).astype(np.float64)
    weights = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def antialias_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` weights of torch's bilinear interpolation with ``antialias=True``.

    The triangle filter widens by the downscaling factor, so every input pixel counts; upscaling
    is plain bilinear interpolation with edge weights renormalised instead of clamped.
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size))
    for index in range(out_size):
        center = scale * (index + 0.5)
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        taps = np.arange(first, last)
        row = np.maximum(1.0 - np.abs((taps - center + 0.5) * inverse), 0.0)
        total = row.sum()
        weights[index, first:last] = row / total if total > 0 else row
    return weights


def resize(image: np.ndarray, height: int, width: int, *, antialias: bool = False) -> np.ndarray:
    """Resize the last two axes of ``image`` to ``height x width`` as torch's bilinear ``interpolate`` does.

    Returns float32; the input is unchanged when its size already matches.
    """
    in_height, in_width = image.shape[-2:]
    source = image.astype(np.float32, copy=False)
    if (in_height, in_width) == (height, width):
        return source
    rows = _float32_weights(in_height, height, antialias)
    cols = _float32_weights(in_width, width, antialias)
    resized: np.ndarray = rows @ source @ cols.T
    return resized


@lru_cache(maxsize=32)
def _float32_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """The weights as float32, computed once per size: a tracker resizes every frame the same way."""
    weights = (antialias_weights if antialias else bilinear_weights)(in_size, out_size).astype(np.float32)
    weights.flags.writeable = False  # shared between calls
    return weights
