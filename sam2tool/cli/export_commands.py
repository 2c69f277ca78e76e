"""``export``: write a checkpoint as files that sam2, safetensors, ONNX runtimes and transformers load."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sam2tool.cli.reporting import DebugOption, Overrides, choice_members, console, reporting_errors
from sam2tool.config.choices import ExportDtype

DtypeName = Enum("DtypeName", choice_members(ExportDtype), type=str)  # type: ignore[misc]
_FP32 = DtypeName("fp32")


def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="A training checkpoint (run folder checkpoints/*.ckpt), or any SAM 2 checkpoint.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write (created; see --force).")],
    overrides: Overrides = None,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="Comma-separated: sam2 (model.pt + model.yaml), safetensors, "
            "onnx (image and video-tracking graphs + onnx_manifest.json, for predict-video --backend onnxruntime), "
            "hf (transformers Sam2VideoModel + Sam2VideoProcessor in hf/).",
        ),
    ] = "sam2",
    dtype: Annotated[
        DtypeName, typer.Option("--dtype", help="Dtype of the weight files; ONNX graphs are always fp32.")
    ] = _FP32,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config naming the model, for checkpoints not written by sam2tool train."),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Input size of the exported model (default: as trained).")
    ] = None,
    onnx_tolerance: Annotated[
        float | None,
        typer.Option("--onnx-tolerance", min=0.0, help="Largest accepted onnxruntime-vs-PyTorch difference."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it is an earlier export.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
    debug: DebugOption = False,
) -> None:
    """Export a checkpoint: LoRA merged, no optimizer state, every file checked, plus a model card."""
    from sam2tool.services.export import export_model, parse_formats

    with reporting_errors(debug):
        formats = parse_formats(format)
        with console.status("Exporting") as status:
            result = export_model(
                checkpoint,
                output,
                formats=formats,
                dtype=dtype.value,
                config=config,
                image_size=image_size,
                overrides=overrides or [],
                force=force,
                onnx_tolerance=onnx_tolerance,
                on_stage=lambda text: status.update(text),
            )
        if json_output:
            typer.echo(json.dumps(result.card, indent=2))
            return
        model = result.card["model"]
        console.print(
            f"Exported {model['name']} at {model['image_size']} px to {result.output}:", markup=False, highlight=False
        )
        for name, entry in result.files.items():
            console.print(f"  {name:<22} {entry['bytes'] / 1e6:9.2f} MB", markup=False, highlight=False)
        for line in result.checks:
            console.print(f"Checked {line}", markup=False, highlight=False)
