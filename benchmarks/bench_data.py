"""Clips per second of sam2tool's training data pipeline vs the official one, on the same data.

Both read the same 480p JPEG / palette PNG folders and apply the official SAM 2.1 MOSE fine-tune
augmentations (flip, affine 25 deg / shear 20, resize to 1024 square, colour jitter, grayscale,
per-frame jitter, normalise) to clips of 8 frames with up to 3 objects, in one process.
Official: training.dataset (PNGRawDataset + VOSDataset + RandomUniformSampler + transforms) from
the sam2 package. Needs the dev extras (tensordict).

Usage: python benchmarks/bench_data.py [--clips N] [--size 1024] [--frames 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import tempfile
import time
from pathlib import Path

import cv2
import torch

from sam2tool.data.clips import ClipPlanner, VideoClipDataset, collate_clips
from sam2tool.data.formats.synthetic_render import render_video
from sam2tool.data.images import write_label_mask
from sam2tool.data.layout import load_manifest
from sam2tool.data.transforms import Augmentations, ClipTransform
from sam2tool.services.prepare_data import PrepareOptions, prepare_data


def make_480p_data(root: Path, videos: int, frames: int) -> Path:
    """Synthetic videos resized to 854x480, written as a YouTube-VOS style source, then prepared."""
    source = root / "source"
    for index in range(videos):
        images, labels = render_video(index, frames, 480, seed=0)
        for t in range(frames):
            image = cv2.resize(images[t], (854, 480), interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(labels[t], (854, 480), interpolation=cv2.INTER_NEAREST)
            (source / "JPEGImages" / f"v{index}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(source / "JPEGImages" / f"v{index}" / f"{t:05d}.jpg"), image[..., ::-1])
            write_label_mask(source / "Annotations" / f"v{index}" / f"{t:05d}.png", label)
    prepared = root / "prepared"
    prepare_data(source, prepared, PrepareOptions(format="ytvos", val_fraction=0.0))
    return prepared


def official_dataset(root: Path, size: int, frames: int):  # type: ignore[no-untyped-def]
    from training.dataset import transforms as T
    from training.dataset.vos_dataset import VOSDataset
    from training.dataset.vos_raw_dataset import PNGRawDataset
    from training.dataset.vos_sampler import RandomUniformSampler

    transforms = [
        T.ComposeAPI(
            [
                T.RandomHorizontalFlip(consistent_transform=True),
                T.RandomAffine(degrees=25, shear=20, image_interpolation="bilinear", consistent_transform=True),
                T.RandomResizeAPI(sizes=size, square=True, consistent_transform=True),
                T.ColorJitter(consistent_transform=True, brightness=0.1, contrast=0.03, saturation=0.03, hue=None),
                T.RandomGrayscale(p=0.05, consistent_transform=True),
                T.ColorJitter(consistent_transform=False, brightness=0.1, contrast=0.05, saturation=0.05, hue=None),
                T.ToTensorAPI(),
                T.NormalizeAPI(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ]
        )
    ]
    raw = PNGRawDataset(img_folder=str(root / "JPEGImages"), gt_folder=str(root / "Annotations"))
    return VOSDataset(
        transforms=transforms,
        training=True,
        video_dataset=raw,
        sampler=RandomUniformSampler(num_frames=frames, max_num_objects=3),
        multiplier=1,
    )


def ours_dataset(root: Path, size: int, frames: int) -> VideoClipDataset:
    manifest = load_manifest(root)
    return VideoClipDataset(
        root,
        manifest.videos,
        sorted(manifest.videos),
        ClipPlanner(frames, 3),
        ClipTransform(size, Augmentations()),
        seed=0,
    )


def clips_per_second(get, count: int) -> float:  # type: ignore[no-untyped-def]
    get(0)  # warm-up
    start = time.perf_counter()
    for index in range(count):
        get(index)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    random.seed(0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; one process, 1 thread; "
        f"{args.frames} frames at {args.size} px from 854x480 JPEGs, MOSE augmentations"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = make_480p_data(Path(tmp), videos=6, frames=max(2 * args.frames, 16))
        from training.utils.data_utils import collate_fn

        official = official_dataset(root, args.size, args.frames)
        ours = ours_dataset(root, args.size, args.frames)
        # Ours first, so that the peak RSS after it is ours alone (ru_maxrss only grows).
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mine = clips_per_second(lambda i: collate_clips([ours[(0, i)]]), args.clips)
        rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        theirs = clips_per_second(lambda i: collate_fn([official[i % len(official)]], dict_key="all"), args.clips)
        rss_official = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"official training.dataset: {theirs:6.2f} clips/s")
    print(f"sam2tool:                  {mine:6.2f} clips/s  ({mine / theirs:.2f}x)")
    print(
        f"peak RSS: {rss_before / 1024:.0f} MiB before, +{(rss_ours - rss_before) / 1024:.0f} MiB with sam2tool, "
        f"{rss_official / 1024:.0f} MiB after the official pipeline ran too"
    )


if __name__ == "__main__":
    main()
