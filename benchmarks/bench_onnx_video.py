"""Video tracking on the CPU: the onnxruntime tracker vs the PyTorch predictor, same export, frames and prompts.

Exports a model with ``sam2tool export --format onnx`` and tracks the same generated video with
the same mask prompts on frame 0 with both backends of ``predict-video``, alternating them
``--repeats`` times in one process with the same thread count (torch's and onnxruntime's
``intra_op_num_threads``). Prints seconds per frame of the
model (``propagate``: prompts and tracking) and end to end (``track``: frames decoded, masks
written as PNGs), the ratio onnxruntime / PyTorch of each repeat, and how far the masks agree.

    python benchmarks/bench_onnx_video.py                      # the packaged base at 128 px
    python benchmarks/bench_onnx_video.py --model tiny --image-size 512   # SAM 2.1 tiny, random weights
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def make_video(folder: Path, frames: int, objects: int) -> np.ndarray:
    """``frames`` 640x360 JPEGs of ``objects`` moving shapes; returns the first frame's labels."""
    from PIL import Image

    from sam2tool.data.formats.synthetic_render import render_video

    folder.mkdir(parents=True)
    images, labels = render_video(0, frames, 256, seed=3, objects=(objects, objects))
    for t, image in enumerate(images):
        Image.fromarray(image).resize((640, 360), Image.BILINEAR).save(folder / f"{t:05d}.jpg", quality=90)
    first: np.ndarray = np.array(Image.fromarray(labels[0]).resize((640, 360), Image.NEAREST))
    return first


def export(kind: str, image_size: int, folder: Path) -> tuple[Path, Path]:
    """The checkpoint and config of the model, and its ONNX export folder."""
    from sam2tool.config.registry import get_spec
    from sam2tool.config.schema import ModelSettings
    from sam2tool.models.build import build_model
    from sam2tool.models.packaged import packaged_checkpoint
    from sam2tool.services.export import export_model

    if kind == "base":
        checkpoint = packaged_checkpoint(get_spec("sam2.1", "micro"))
        config = Path(__file__).resolve().parents[1] / "configs" / "micro.yaml"
    else:
        torch.manual_seed(0)
        model = build_model(ModelSettings(size=kind, checkpoint=None), image_size, load_weights=False).model  # type: ignore[arg-type]
        checkpoint = folder / "model.pt"
        torch.save({"model": model.state_dict()}, checkpoint)
        config = folder / "model.yaml"
        config.write_text(f"model:\n  size: {kind}\n  checkpoint: null\ndataset:\n  image_size: {image_size}\n")
    start = time.perf_counter()
    export_model(checkpoint, folder / "export", formats=["onnx"], config=config, image_size=image_size)
    print(f"export --format onnx: {time.perf_counter() - start:.1f} s")
    return config, checkpoint


def timed(predictor: Any, frames: Path, prompts: list[Any], output: Path | None) -> tuple[float, dict[int, Any]]:
    """Seconds to track every frame; with ``output``, end to end through ``track`` (PNGs written)."""
    from sam2tool.data.frames import FolderFrames
    from sam2tool.models.onnx_tracker import OnnxVideoPredictor
    from sam2tool.models.tracking import TrackOptions, propagate, track

    onnx = isinstance(predictor, OnnxVideoPredictor)
    start = time.perf_counter()
    if output is not None:
        track(predictor, FolderFrames(frames), output, prompts, TrackOptions(overwrite=True))
        return time.perf_counter() - start, {}
    masks: dict[int, Any] = {}
    with contextlib.nullcontext() if onnx else torch.inference_mode():
        state = predictor.init_state(FolderFrames(frames))
        for frame, _, logits in propagate(predictor, state, prompts):
            masks[frame] = (logits if onnx else logits.float().numpy()) > 0
    return time.perf_counter() - start, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="base (the packaged base) or an official size (tiny, ...)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 128 for base, 512 otherwise")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    image_size = args.image_size or (128 if args.model == "base" else 512)

    import onnxruntime as ort

    from sam2tool.models.onnx_bundle import open_bundle
    from sam2tool.models.onnx_tracker import OnnxVideoPredictor
    from sam2tool.models.prompts import Prompt
    from sam2tool.models.tracking import load_predictor
    from sam2tool.services.predict_video import model_settings

    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads; "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print(f"model {args.model} at {image_size} px, {args.frames} frames of 640x360, {args.objects} objects (masks)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config, checkpoint = export(args.model, image_size, folder)
        first = make_video(folder / "frames", args.frames, args.objects)
        prompts = [Prompt(0, k, mask=first == k) for k in range(1, args.objects + 1)]
        settings, size = model_settings(config, str(checkpoint), image_size=image_size)
        backends = {
            "PyTorch": load_predictor(settings, size, "cpu"),
            "onnxruntime": OnnxVideoPredictor(open_bundle(folder / "export", threads=args.threads)),
        }
        results: dict[str, dict[str, list[float]]] = {name: {"model": [], "end to end": []} for name in backends}
        masks: dict[str, dict[int, Any]] = {}
        for name, predictor in backends.items():  # warm-up
            masks[name] = timed(predictor, folder / "frames", prompts, None)[1]
        for _ in range(args.repeats):
            for name, predictor in backends.items():
                results[name]["model"].append(timed(predictor, folder / "frames", prompts, None)[0] / args.frames)
                seconds = timed(predictor, folder / "frames", prompts, folder / f"out-{name}")[0]
                results[name]["end to end"].append(seconds / args.frames)
    agreement = min(float((masks["PyTorch"][t] == masks["onnxruntime"][t]).mean()) for t in masks["PyTorch"])
    print()
    print("| measure | PyTorch s/frame | onnxruntime s/frame | onnxruntime / PyTorch (each repeat) |")
    print("|---|---|---|---|")
    for measure in ("model", "end to end"):
        ours, theirs = results["onnxruntime"][measure], results["PyTorch"][measure]
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(ours, theirs, strict=True))
        print(
            f"| {measure} | {statistics.median(theirs):.4f} ({min(theirs):.4f}-{max(theirs):.4f}) "
            f"| {statistics.median(ours):.4f} ({min(ours):.4f}-{max(ours):.4f}) | {ratios} |"
        )
    print(f"\nmask pixels equal between the backends: >= {100 * agreement:.3f} % per frame")


if __name__ == "__main__":
    main()
