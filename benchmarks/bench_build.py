"""Print how long building each model takes (compose the Hydra config + instantiate, random weights).

Usage: python benchmarks/bench_build.py [--repeats N]
Also times saving and strictly loading a SAM 2.1 tiny checkpoint through sam2tool's loader.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from sam2tool.config.schema import ModelSettings
from sam2tool.models.build import build_model
from sam2tool.models.checkpoints import save_official_checkpoint


def best_of(repeats: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    cases = [("micro", 64), ("micro", 128), ("tiny", 1024), ("small", 1024), ("base_plus", 1024), ("large", 1024)]
    for size, image_size in cases:
        settings = ModelSettings(size=size, checkpoint=None)  # type: ignore[arg-type]
        seconds = best_of(args.repeats, partial(build_model, settings, image_size))
        print(f"build sam2.1 {size:<9} at {image_size:>4} px: {seconds:6.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.pt"
        model = build_model(ModelSettings(size="tiny", checkpoint=None), 1024).model
        save_seconds = best_of(args.repeats, partial(save_official_checkpoint, model, path))
        settings = ModelSettings(size="tiny", checkpoint=str(path))
        load_seconds = best_of(args.repeats, partial(build_model, settings, 1024))
        print(f"save sam2.1 tiny checkpoint ({path.stat().st_size / 1e6:.0f} MB): {save_seconds:6.3f} s")
        print(f"build + strictly load sam2.1 tiny from it: {load_seconds:6.3f} s")


if __name__ == "__main__":
    main()
