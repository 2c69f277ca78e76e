"""The numpy resizes equal torch's bilinear interpolate, with and without antialiasing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam2tool.data.resize import resize

SIZES = [
    ((32, 32), (128, 128)),  # low-resolution logits up to the model's input size
    ((32, 32), (120, 200)),  # ... and to a video's size
    ((120, 200), (128, 128)),  # a mask prompt down to the input size
    ((480, 854), (64, 64)),  # a large factor
    ((100, 37), (7, 64)),  # down one axis, up the other
    ((13, 13), (13, 40)),  # one axis unchanged
]


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize(("size", "new_size"), SIZES)
def test_resize_equals_torch_interpolate(size: tuple[int, int], new_size: tuple[int, int], antialias: bool) -> None:
    values = 10 * np.random.default_rng(0).normal(size=(3, 1, *size)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(values), size=new_size, mode="bilinear", align_corners=False, antialias=antialias
    ).numpy()
    got = resize(values, *new_size, antialias=antialias)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=3e-4)  # |values| up to 50: float32 rounding


def test_resizing_a_mask_down_thresholds_like_sam2() -> None:
    """sam2 resizes a mask prompt with antialiasing and keeps pixels >= 0.5."""
    mask = np.zeros((1, 1, 150, 200), np.float32)
    mask[..., 30:97, 41:160] = 1.0
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(mask), size=(128, 128), mode="bilinear", align_corners=False, antialias=True
    ).numpy()
    np.testing.assert_array_equal(resize(mask, 128, 128, antialias=True) >= 0.5, expected >= 0.5)


def test_same_size_is_returned_unchanged() -> None:
    values = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    np.testing.assert_array_equal(resize(values, 3, 4), values.astype(np.float32))
