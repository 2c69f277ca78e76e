"""J&F of the packaged micro base on held-out videos of its own distribution (the `shapes` style).

Two held-out sets, generated with a seed the pretraining data never used:
- `1-3 objects`: 1 to 3 objects per video, which occlude each other and leave and re-enter the frame;
- `3 objects`: three objects in every video, so that identity must be kept from memory.

Each object is prompted with its first ground-truth mask and tracked through the video by the
streaming predictor that `predict-video` and `evaluate` use, then scored DAVIS-exactly (the
first and last frames are not scored). The same figures come from
`sam2tool evaluate --config configs/micro.yaml --data DIR` on such a folder.

Usage: python benchmarks/bench_base.py [--checkpoint PATH] [--videos N] [--frames N] [--seed N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sam2tool.config.loading import load_settings
from sam2tool.config.registry import PACKAGED_BASE, PACKAGED_IMAGE_SIZE
from sam2tool.data.formats.synthetic import SyntheticOptions
from sam2tool.data.layout import load_manifest
from sam2tool.services.evaluate import evaluate_model
from sam2tool.services.prepare_data import PrepareOptions, prepare_data

SETS = {"1-3 objects": (1, 3), "3 objects": (3, 3)}


def returning_objects(root: Path) -> tuple[int, set[tuple[str, str]]]:
    """How many objects there are, and which leave the frame (or are fully hidden) and come back."""
    manifest = load_manifest(root)
    count, returning = 0, set()
    for name, record in manifest.videos.items():
        order = {stem: i for i, stem in enumerate(record.frames)}
        for object_id, stems in record.objects.items():
            count += 1
            seen = sorted(order[s] for s in stems)
            if any(b - a > 1 for a, b in itertools.pairwise(seen)):
                returning.add((name, str(object_id)))
    return count, returning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="official", help="model.checkpoint (default: the packaged base)")
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1000, help="data seed (the pretraining data uses 0)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    settings = load_settings(
        None, flags={"model.size": "micro", "model.checkpoint": args.checkpoint, "dataset.image_size": 128}
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; model "
        f"{PACKAGED_BASE if args.checkpoint == 'official' else args.checkpoint} at {PACKAGED_IMAGE_SIZE} px; "
        f"{args.videos} held-out videos of {args.frames} frames per set, data seed {args.seed}, mask prompts on "
        "each object's first frame"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, objects) in enumerate(SETS.items()):
            root = Path(tmp) / f"set{index}"
            generated = SyntheticOptions(
                num_videos=args.videos, frames=args.frames, size=PACKAGED_IMAGE_SIZE, objects=objects
            )
            options = PrepareOptions(
                format="synthetic", format_options=generated, seed=args.seed + index, val_fraction=1.0
            )
            prepare_data(None, root, options)
            count, returning = returning_objects(root)
            start = time.perf_counter()
            report = evaluate_model(
                settings, PACKAGED_IMAGE_SIZE, root, "val", Path(tmp) / f"eval{index}", device="cpu"
            )
            seconds = time.perf_counter() - start
            result = report["model"]
            videos = sorted(float(v["J&F"]) for v in result.per_video)
            overall = result.overall
            back = [float(r["J&F"]) for r in result.per_object if (str(r["video"]), str(r["object"])) in returning]
            back_text = f" (J&F {statistics.mean(back):.3f})" if back else ""
            print(
                f"{name:12s} J&F {overall['J&F']:.3f} (J {overall['J']:.3f}, F {overall['F']:.3f}); "
                f"per video min {videos[0]:.3f} / median {statistics.median(videos):.3f} / max {videos[-1]:.3f}; "
                f"{count} objects, {len(returning)} leave the frame or are hidden and come back{back_text}; "
                f"{seconds:.0f} s"
            )


if __name__ == "__main__":
    main()
