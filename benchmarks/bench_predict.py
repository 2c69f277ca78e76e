"""predict-video speed and memory vs the official SAM2VideoPredictor, in the same run.

1. Seconds per propagated frame, ours vs official, same frames, weights and prompt
   (default: SAM 2.1 tiny at 512 px, random weights, 30 frames of 1280x720).
2. Peak RSS and time to the first mask of ours on a 100-frame and a 2,000-frame 1280x720 video
   (default: the micro model at 512 px, so that 2,000 frames take minutes, not an hour; the
   memory that grows with length is frames and per-frame outputs, not the model), and of the
   official predictor on the 100-frame video and on --official-long frames.

Each measurement runs in its own process so that peak RSS is its own.
Usage: python benchmarks/bench_predict.py [--size tiny] [--image-size 512] [--frames 30] [--long 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_video(folder: Path, count: int) -> Path:
    """``count`` 1280x720 JPEG frames of a square moving over noise."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, size=(720, 1280, 3), dtype=np.uint8)
    for t in range(count):
        frame = background.copy()
        x = 100 + (t * 3) % 900
        frame[200:420, x : x + 220] = (220, 40, 40)
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=85)
    return folder


def run_one(kind: str, frames: Path, size: str, image_size: int, limit: int) -> dict[str, float]:
    """Track one object through ``frames``; report time to first mask, s/frame and peak RSS."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from sam2tool.config.registry import get_spec
    from sam2tool.config.schema import ModelSettings
    from sam2tool.data.frames import FolderFrames
    from sam2tool.models.build import build_video_predictor, model_overrides
    from sam2tool.models.checkpoints import save_official_checkpoint

    torch.manual_seed(0)
    settings = ModelSettings(size=size, checkpoint=None)  # type: ignore[arg-type]
    ours = build_video_predictor(settings, image_size).model
    if kind == "official":
        from sam2.build_sam import build_sam2_video_predictor

        spec = get_spec("sam2.1", size)  # type: ignore[arg-type]
        checkpoint = frames.parent / f"{size}.pt"
        save_official_checkpoint(ours, checkpoint)
        predictor = build_sam2_video_predictor(
            spec.config_name, str(checkpoint), device="cpu", hydra_overrides_extra=model_overrides(spec, image_size)
        )
        del ours
    else:
        predictor = ours
    start = time.perf_counter()
    with torch.inference_mode():
        state = predictor.init_state(str(frames) if kind == "official" else FolderFrames(frames))
        predictor.add_new_points_or_box(
            state, frame_idx=0, obj_id=1, box=np.array([100, 200, 320, 420], dtype=np.float32)
        )
        first = None
        count = 0
        propagate_start = time.perf_counter()
        for _ in predictor.propagate_in_video(state, max_frame_num_to_track=limit):
            count += 1
            if first is None:
                first = time.perf_counter() - start
        elapsed = time.perf_counter() - propagate_start
    return {
        "first_mask_s": float(first or 0.0),
        "s_per_frame": elapsed / max(count, 1),
        "frames": count,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(kind: str, frames: Path, size: str, image_size: int, limit: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", kind, str(frames), size, str(image_size), str(limit)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, frames, size, image_size, limit = sys.argv[2:7]
        print(json.dumps(run_one(kind, Path(frames), size, int(image_size), int(limit))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="tiny", help="model for the speed comparison")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=30, help="frames of the speed comparison")
    parser.add_argument("--memory-size", default="micro", help="model for the memory comparison")
    parser.add_argument("--long", type=int, default=2000, help="frames of the long video")
    parser.add_argument("--official-long", type=int, default=300, help="frames the official predictor gets")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; model input {args.image_size} px; 1280x720 JPEG frames"
    )
    with tempfile.TemporaryDirectory() as tmp:
        short = make_video(Path(tmp) / "short", max(args.frames, 100))
        ours = measure("ours", short, args.size, args.image_size, args.frames)
        theirs = measure("official", short, args.size, args.image_size, args.frames)
        print(f"speed, SAM 2.1 {args.size}, {args.frames} frames:")
        print(f"  official SAM2VideoPredictor: {theirs['s_per_frame']:.3f} s/frame")
        ratio = ours["s_per_frame"] / theirs["s_per_frame"]
        print(f"  sam2tool streaming:          {ours['s_per_frame']:.3f} s/frame  (ratio {ratio:.2f})")
        long = make_video(Path(tmp) / "long", args.long)
        rows = [
            ("sam2tool", 100, measure("ours", short, args.memory_size, args.image_size, 100)),
            ("sam2tool", args.long, measure("ours", long, args.memory_size, args.image_size, args.long)),
            ("official", 100, measure("official", short, args.memory_size, args.image_size, 100)),
        ]
        if args.official_long:
            official_long = make_video(Path(tmp) / "official_long", args.official_long)
            rows.append(
                (
                    "official",
                    args.official_long,
                    measure("official", official_long, args.memory_size, args.image_size, args.official_long),
                )
            )
        print(f"memory, {args.memory_size} model (peak RSS of the whole process; time to the first mask):")
        for name, frames, result in rows:
            rss, first = result["peak_rss_mib"], result["first_mask_s"]
            print(f"  {name:9s} {frames:5d} frames: peak RSS {rss:7.0f} MiB, first mask after {first:6.2f} s")
        growth = rows[1][2]["peak_rss_mib"] / rows[0][2]["peak_rss_mib"] - 1
        print(f"  sam2tool RSS growth from 100 to {args.long} frames: {100 * growth:+.1f} %")


if __name__ == "__main__":
    main()
