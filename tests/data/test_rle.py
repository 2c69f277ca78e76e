"""COCO RLE and polygons against pycocotools, the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest

from sam2tool.data.rle import decode_counts, decode_rle, encode_rle, polygons_to_mask

mask_utils = pytest.importorskip("pycocotools.mask")


def test_rle_round_trip_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        height, width = (int(v) for v in rng.integers(1, 50, size=2))
        mask = rng.random((height, width)) < rng.random()
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert encode_rle(mask)["counts"] == reference["counts"].decode()
        assert np.array_equal(decode_rle({"size": reference["size"], "counts": reference["counts"].decode()}), mask)


def test_uncompressed_counts() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 1:3] = True  # column-major runs: 4 zeros, 1 one, 2 zeros, 1 one, 4 zeros
    assert np.array_equal(decode_rle({"size": [3, 4], "counts": [4, 1, 2, 1, 4]}), mask)


def test_polygons_match_pycocotools_exactly() -> None:
    rng = np.random.default_rng(1)
    for _ in range(150):
        height, width = (int(v) for v in rng.integers(10, 70, size=2))
        polygons = [list(rng.uniform(-3, 70, size=2 * int(rng.integers(3, 9)))) for _ in range(int(rng.integers(1, 3)))]
        reference = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)
        assert np.array_equal(polygons_to_mask(polygons, height, width), reference)


def test_malformed_rle() -> None:
    with pytest.raises(ValueError, match="add up to"):
        decode_rle({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError, match="truncated"):
        decode_counts("P")  # a continuation bit with nothing after it
