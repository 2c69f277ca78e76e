"""Seconds to score masks: sam2tool's J/F vs davis2017-evaluation's functions, one process.

The reference is vos-benchmark's Evaluator, whose boundary code is copied from
davis2017-evaluation (full-frame _seg2bmap and cv2.dilate per object). Both score the same
480x854 frames with 3 objects of DAVIS-like size, predictions slightly off the ground truth.

Usage: python benchmarks/bench_metrics.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from sam2tool.metrics.frame import boundary_radius, score_objects


def make_frames(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(count):
        gt = np.zeros((480, 854), dtype=np.uint8)
        for k, (cy, cx, ry, rx) in enumerate(((160, 250, 90, 60), (300, 520, 70, 110), (240, 700, 40, 30)), start=1):
            cv2.ellipse(gt, (cx + 2 * t, cy), (rx, ry), 0, 0, 360, k, -1)
        pred = np.roll(gt, int(rng.integers(-4, 5)), axis=1)
        frames.append((gt, pred))
    return frames


def main() -> None:
    from vos_benchmark.evaluator import Evaluator

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    frames = make_frames(args.frames)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.frames} frames of 854x480, 3 objects, 1 process"
    )

    start = time.perf_counter()
    reference = Evaluator()
    for gt, pred in frames:
        reference.feed_frame(pred, gt)
    theirs = time.perf_counter() - start

    start = time.perf_counter()
    radius = boundary_radius(480, 854)
    ours_j, ours_f = [], []
    for gt, pred in frames:
        j_values, f_values = score_objects(gt, pred, [1, 2, 3], radius)
        ours_j.append(j_values)
        ours_f.append(f_values)
    mine = time.perf_counter() - start

    for k in (1, 2, 3):
        assert np.allclose([j[k - 1] for j in ours_j], reference.object_iou[k], atol=1e-9)
        assert np.allclose([f[k - 1] for f in ours_f], reference.boundary_f[k], atol=1e-9)
    print(f"davis2017-evaluation functions: {1000 * theirs / args.frames:7.2f} ms per frame")
    print(
        f"sam2tool metrics:               {1000 * mine / args.frames:7.2f} ms per frame  ({theirs / mine:.1f}x faster)"
    )
    print("per-frame J and F identical (checked)")


if __name__ == "__main__":
    main()
