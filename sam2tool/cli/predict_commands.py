"""``predict-video``: parse prompts and options, call the service, show progress."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sam2tool.cli.reporting import DebugOption, Overrides, choice_members, console, progress_bar, reporting_errors
from sam2tool.config.choices import Backend, Device

DeviceName = Enum("DeviceName", choice_members(Device), type=str)  # type: ignore[misc]
AUTO_DEVICE = DeviceName("auto")
BackendName = Enum("BackendName", choice_members(Backend), type=str)  # type: ignore[misc]
TORCH_BACKEND = BackendName("torch")


def predict_video(
    input: Annotated[Path, typer.Argument(help="A folder of frames (jpg/jpeg/png, natural order) or a video file.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the masks: one DAVIS palette PNG per frame.")
    ],
    overrides: Overrides = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config whose model section (and dataset.image_size) to use.")
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            help="Weights: a training checkpoint or an export (their model and size are used without --config), "
            "or an official checkpoint file. With --backend onnxruntime: an ONNX export folder.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="An official model by name, e.g. sam2.1_hiera_large (downloaded once), or sam2.1_micro "
            "(the pretrained base packaged with sam2tool, no download).",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            help="Model input size (default: the config's, else what the model was trained at: 1024, 128 for micro).",
        ),
    ] = None,
    point: Annotated[
        list[str] | None,
        typer.Option("--point", help="A click X,Y[,LABEL] (label 1 object, 0 background); repeatable."),
    ] = None,
    box: Annotated[str | None, typer.Option("--box", help="A box X1,Y1,X2,Y2.")] = None,
    mask: Annotated[Path | None, typer.Option("--mask", help="A palette/label PNG: one object per label.")] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts", help="JSON/YAML list of {frame, obj_id, points, labels, box, mask} for several objects."
        ),
    ] = None,
    obj_id: Annotated[int, typer.Option("--obj-id", min=1, max=254, help="Object id of --point/--box.")] = 1,
    frame: Annotated[int, typer.Option("--frame", min=0, help="Frame of --point/--box/--mask.")] = 0,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write overlay JPEGs to OUTPUT/overlays/.")] = False,
    per_object: Annotated[
        bool, typer.Option("--per-object", help="Also write binary PNGs per object to OUTPUT/objects/<id>/.")
    ] = False,
    save_video: Annotated[Path | None, typer.Option("--save-video", help="Also write an MP4 of the overlays.")] = None,
    fps: Annotated[float, typer.Option("--fps", min=1.0, help="Frame rate of --save-video.")] = 24.0,
    device: Annotated[
        DeviceName, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps.")
    ] = AUTO_DEVICE,
    force: Annotated[bool, typer.Option("--force", help="Overwrite masks already in OUTPUT.")] = False,
    compile: Annotated[
        bool, typer.Option("--compile", help="Compile the model with torch.compile (CUDA; slow start, faster frames).")
    ] = False,
    offload: Annotated[
        bool, typer.Option("--offload", help="Keep the tracking state in host memory (long videos on small GPUs).")
    ] = False,
    backend: Annotated[
        BackendName,
        typer.Option(
            "--backend",
            help="torch: PyTorch (the model of --checkpoint/--model/--config). onnxruntime: the graphs of the "
            "folder `sam2tool export --format onnx` writes, given as --checkpoint; the PyTorch backend's masks on "
            "the CPU, without PyTorch.",
        ),
    ] = TORCH_BACKEND,
    debug: DebugOption = False,
) -> None:
    """Track objects through a video of any length in constant memory; write a mask per frame."""
    import time

    from rich.progress import TextColumn, TimeRemainingColumn

    from sam2tool.models.tracking import TrackOptions
    from sam2tool.services.predict_video import (
        PromptInputs,
        gather_prompts,
        model_settings,
        onnx_export_folder,
        predict_video_onnx,
    )
    from sam2tool.services.predict_video import predict_video as run

    with reporting_errors(debug):
        onnx = backend.value == "onnxruntime"
        if onnx:
            export = onnx_export_folder(checkpoint, config, model, image_size, compile, overrides or [])
        else:
            settings, size = model_settings(config, checkpoint, model, image_size, overrides or [])
        inputs = PromptInputs(points=point or (), box=box, mask=mask, prompts_file=prompts, obj_id=obj_id, frame=frame)
        items = gather_prompts(inputs)
        options = TrackOptions(
            offload=offload, overlay=overlay, per_object=per_object, save_video=save_video, fps=fps, overwrite=force
        )
        with progress_bar(TextColumn("{task.fields[fps]}"), TimeRemainingColumn()) as progress:
            task = progress.add_task("Tracking", total=None, fps="")
            started = time.perf_counter()

            def on_frame(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=done, total=total, fps=f"{rate:.1f} frames/s")

            if onnx:
                result = predict_video_onnx(
                    input, output, export, items, device=device.value, options=options, on_frame=on_frame
                )
            else:
                result = run(
                    input,
                    output,
                    settings,
                    size,
                    items,
                    device=device.value,
                    compile=compile,
                    options=options,
                    on_frame=on_frame,
                )
        console.print(
            f"Wrote masks of {len(result.objects)} object(s) for {result.frames} frames to {result.output} "
            f"in {result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.1f} frames/s)",
            markup=False,
            highlight=False,
        )
        if result.video is not None:
            console.print(f"Wrote {result.video}", markup=False, highlight=False)
