"""``prepare-data``: parse options, call the service, show progress and a summary table."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sam2tool.cli.reporting import DebugOption, console, progress_bar, reporting_errors
from sam2tool.data.formats import FORMATS, SYNTHETIC_STYLES

FormatName = Enum("FormatName", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]
StyleName = Enum("StyleName", {name: name for name in SYNTHETIC_STYLES}, type=str)  # type: ignore[misc]

_FORMAT_HELP = "Source format: " + "; ".join(f"{name}: {summary}" for name, summary in FORMATS.items()) + "."


def prepare_data(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="SOURCE OUTPUT: the source folder (the JSON file for coco) and the folder to create "
            "(for --format synthetic only OUTPUT).",
            show_default=False,
        ),
    ],
    format: Annotated[FormatName, typer.Option("--format", "-f", help=_FORMAT_HELP)],
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            min=0.0,
            max=1.0,
            help="Fraction of videos held out for validation; 1.0 holds out every video, a test set for "
            "evaluate (default: the source's own split (DAVIS ImageSets) if it has one, else 0.2).",
            show_default=False,
        ),
    ] = None,
    val_videos: Annotated[
        str | None, typer.Option("--val-videos", help="Comma-separated names of the validation videos.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of the synthetic data.")] = 0,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Leave out videos with problems (listed in the manifest) instead of stopping."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    resolution: Annotated[
        str | None, typer.Option("--resolution", help="DAVIS: 480p or Full-Resolution (default: 480p if present).")
    ] = None,
    num_videos: Annotated[int, typer.Option("--num-videos", min=1, help="Synthetic: number of videos.")] = 16,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Synthetic: frames per video.")] = 24,
    size: Annotated[int, typer.Option("--size", min=32, help="Synthetic: frame size in pixels.")] = 256,
    objects: Annotated[
        str,
        typer.Option("--objects", help="Synthetic: objects per video, N or a range MIN-MAX drawn per video (1 to 8)."),
    ] = "2-3",
    style: Annotated[
        StyleName,
        typer.Option(
            "--style",
            help="Synthetic: " + "; ".join(f"{name}: {text}" for name, text in SYNTHETIC_STYLES.items()) + ".",
        ),
    ] = StyleName["shapes"],
    images: Annotated[
        Path | None,
        typer.Option("--images", help="COCO: folder of the images (default: beside the JSON, or the split folder)."),
    ] = None,
    all_frames: Annotated[
        bool, typer.Option("--all-frames", help="SA-V: also write the unannotated frames (24 fps instead of 6).")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Convert annotations (DAVIS, YouTube-VOS/MOSE, SA-V, COCO, synthetic) into the training layout."""
    from rich.table import Table

    from sam2tool.errors import UsageError
    from sam2tool.services.prepare_data import PrepareOptions, parse_objects
    from sam2tool.services.prepare_data import prepare_data as run

    with reporting_errors(debug):
        synthetic = format.value == "synthetic"
        if len(paths) != (1 if synthetic else 2):
            expected = "OUTPUT" if synthetic else "SOURCE OUTPUT"
            raise UsageError(f"--format {format.value} takes {expected}, got {len(paths)} path(s)")
        source, output = (None, paths[0]) if synthetic else (paths[0], paths[1])
        options = PrepareOptions(
            format=format.value,
            val_fraction=val_fraction,
            val_videos=[v.strip() for v in val_videos.split(",") if v.strip()] if val_videos else (),
            seed=seed,
            skip_bad=skip_bad,
            force=force,
            resolution=resolution,
            num_videos=num_videos,
            frames=frames,
            size=size,
            objects=parse_objects(objects),
            style=style.value,
            images=images,
            all_frames=all_frames,
        )
        with progress_bar() as progress:
            task = progress.add_task("Converting", total=None)

            def on_video(name: str, index: int, total: int) -> None:
                progress.update(task, completed=index, total=total or None, description=f"Converting {name}")

            result = run(source, output, options, on_video)

        manifest = result.manifest
        table = Table(title=f"Prepared {result.output}", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("videos", str(len(manifest.videos)))
        table.add_row("frames", str(result.frames))
        table.add_row("annotated frames", str(result.annotated_frames))
        table.add_row("objects", str(result.objects))
        table.add_row("skipped videos", str(len(manifest.skipped)))
        for split, names in manifest.splits.items():
            table.add_row(f"{split} split", str(len(names)))
        console.print(table)
        for skipped in manifest.skipped:
            console.print(f"skipped {skipped.name}: {'; '.join(skipped.problems)}", style="yellow", markup=False)
