"""J and F per frame against vos-benchmark's copy of davis2017-evaluation's functions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sam2tool.metrics.frame import boundary_f, boundary_radius, disk, jaccard, score_objects, seg2bmap
from sam2tool.metrics.statistics import mean_recall_decay

evaluator = pytest.importorskip("vos_benchmark.evaluator")


def random_labels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    labels = np.zeros((height, width), dtype=np.uint8)
    for k in (1, 2, 3):
        if rng.random() < 0.8:
            y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
            labels[max(0, y - 12) : y + int(rng.integers(1, 30)), max(0, x - 9) : x + int(rng.integers(1, 40))] = k
    if rng.random() < 0.3:
        labels = np.where(rng.random((height, width)) < 0.05, rng.integers(0, 4, (height, width)), labels)
    return labels.astype(np.uint8)


def test_per_frame_values_equal_the_reference() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = int(rng.integers(16, 140)), int(rng.integers(16, 180))
        gt, pred = random_labels(rng, height, width), random_labels(rng, height, width)
        reference = evaluator.Evaluator()
        reference.feed_frame(pred, gt)
        ids = [1, 2, 3]
        radius = boundary_radius(height, width)
        j_values, f_values = score_objects(gt, pred, ids, radius)
        for k, j, f in zip(ids, j_values, f_values, strict=True):
            assert f == boundary_f(gt == k, pred == k, radius)
            if k not in reference.object_iou:  # absent from both: J = F = 1 by definition
                assert j == 1.0 and f == 1.0
                continue
            assert abs(reference.object_iou[k][0] - j) < 1e-6
            assert abs(reference.boundary_f[k][0] - f) < 1e-6


def test_edge_cases_of_the_definition() -> None:
    empty, blob = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    blob[5:10, 5:10] = True
    assert jaccard(empty, empty) == 1.0
    assert boundary_f(empty, empty, 3) == 1.0
    assert boundary_f(blob, empty, 3) == 0.0  # no predicted boundary: P = 1, R = 0
    assert boundary_f(empty, blob, 3) == 0.0  # no ground-truth boundary: P = 0, R = 1
    assert boundary_f(blob, blob, 3) == 1.0 and jaccard(blob, blob) == 1.0


def test_radius_and_disk() -> None:
    assert boundary_radius(480, 854) == 8
    assert boundary_radius(1080, 1920) == 18
    skimage_morphology = pytest.importorskip("skimage.morphology")
    for radius in (1, 3, 8, 18):
        assert np.array_equal(disk(radius), skimage_morphology.disk(radius).astype(np.uint8))


def test_seg2bmap_matches_the_reference() -> None:
    utils = pytest.importorskip("vos_benchmark.utils")
    rng = np.random.default_rng(3)
    for _ in range(50):
        mask = rng.random((int(rng.integers(2, 30)), int(rng.integers(2, 30)))) < 0.4
        assert np.array_equal(seg2bmap(mask), utils._seg2bmap(mask.copy()))


def davis_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """DAVIS's db_statistics, with its uint8 cast of the bin boundaries."""
    bounds = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [values[bounds[i] : bounds[i + 1] + 1] for i in range(4)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            float(np.nanmean(values)),
            float(np.nanmean(values > 0.5)),
            float(np.nanmean(bins[0]) - np.nanmean(bins[3])),
        )


def test_statistics_equal_davis_up_to_255_frames_and_stay_right_beyond() -> None:
    rng = np.random.default_rng(1)
    for length in (3, 10, 77, 255):
        values = rng.random(length)
        assert np.allclose(mean_recall_decay(values), davis_statistics(values))
    values = np.concatenate([np.ones(300), np.zeros(300)])
    mean, recall, decay = mean_recall_decay(values)
    assert (mean, recall) == (0.5, 0.5)
    assert decay == pytest.approx(1.0)  # first quarter all 1, last quarter all 0
    assert davis_statistics(values)[2] != pytest.approx(1.0)  # DAVIS's uint8 cast gets this wrong
