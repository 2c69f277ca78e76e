"""Export figures: time per format, file sizes, ONNX accuracy and speed against PyTorch.

Exports SAM 2.1 tiny (random weights, saved as a checkpoint of Meta's format) with
``sam2tool export`` in every format and both dtypes, then times the two ONNX graphs in
onnxruntime against the same computation in PyTorch on the CPU.

    python benchmarks/bench_export.py [--size tiny] [--image-size 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def median_seconds(function, repeats: int) -> float:  # type: ignore[no-untyped-def]
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import onnxruntime as ort

    from sam2tool.config.schema import ModelSettings
    from sam2tool.export.onnx_export import ImageEncoderGraph, MaskDecoderGraph
    from sam2tool.models.build import build_model
    from sam2tool.services.export import export_model

    torch.manual_seed(0)
    settings = ModelSettings(size=args.size, checkpoint=None)
    model = build_model(settings, args.image_size, load_weights=False).model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = folder / "model.pt"
        torch.save({"model": model.state_dict()}, checkpoint)
        config = folder / "model.yaml"
        config.write_text(
            f"model:\n  size: {args.size}\n  checkpoint: null\ndataset:\n  image_size: {args.image_size}\n"
        )
        threads = torch.get_num_threads()
        print(f"SAM 2.1 {args.size} at {args.image_size} px, torch {torch.__version__}, {threads} threads")
        print("| export | seconds | files (MB) |")
        print("|---|---|---|")
        result = None
        for formats, dtype in ((["sam2"], "fp32"), (["safetensors"], "fp32"), (["sam2", "safetensors"], "bf16")):
            start = time.perf_counter()
            out = folder / f"{'-'.join(formats)}-{dtype}"
            result = export_model(checkpoint, out, formats=formats, dtype=dtype, config=config)
            sizes = ", ".join(f"{n} {e['bytes'] / 1e6:.1f}" for n, e in result.files.items() if not n.endswith("yaml"))
            print(f"| {'+'.join(formats)} {dtype} | {time.perf_counter() - start:.1f} | {sizes} |")
        start = time.perf_counter()
        result = export_model(checkpoint, folder / "onnx", formats=["onnx"], config=config)
        seconds = time.perf_counter() - start
        sizes = ", ".join(f"{n} {e['bytes'] / 1e6:.1f}" for n, e in result.files.items() if n.endswith(".onnx"))
        print(f"| onnx (export + onnxruntime check) | {seconds:.1f} | {sizes} |")
        print()
        print("ONNX check (max abs difference onnxruntime vs PyTorch):")
        print(json.dumps([{g["file"]: g["max_abs_diff"]} for g in result.card["onnx"]["graphs"]], indent=1))

        encoder = ImageEncoderGraph(model).eval()
        decoder = MaskDecoderGraph(model).eval()
        image = torch.rand(1, 3, args.image_size, args.image_size)
        with torch.no_grad():
            features = encoder(image)
        s4 = args.image_size // 4
        prompt = (
            torch.tensor([[[args.image_size * 0.4, args.image_size * 0.5]]]),
            torch.ones(1, 1),
            torch.zeros(1, 1, s4, s4),
            torch.zeros(1),
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        enc = ort.InferenceSession(str(folder / "onnx" / "image_encoder.onnx"), options)
        dec = ort.InferenceSession(str(folder / "onnx" / "mask_decoder.onnx"), options)
        enc_feed = {enc.get_inputs()[0].name: image.numpy()}
        names = [i.name for i in dec.get_inputs()]
        dec_feed = dict(zip(names, [t.numpy() for t in (*features[:3], *prompt)], strict=True))

        def torch_encoder() -> None:
            with torch.no_grad():
                encoder(image)

        def torch_decoder() -> None:
            with torch.no_grad():
                decoder(*features[:3], *prompt)

        print()
        print("| graph | PyTorch s (median) | onnxruntime s (median) |")
        print("|---|---|---|")
        for label, eager, session, feed in (
            ("image encoder", torch_encoder, enc, enc_feed),
            ("prompt encoder + mask decoder", torch_decoder, dec, dec_feed),
        ):
            t_torch = median_seconds(eager, args.repeats)
            t_ort = median_seconds(lambda s=session, f=feed: s.run(None, f), args.repeats)
            print(f"| {label} | {t_torch:.4f} | {t_ort:.4f} |")
        assert np.isfinite(t_ort)


if __name__ == "__main__":
    main()
