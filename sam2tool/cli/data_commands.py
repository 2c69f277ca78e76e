"""``prepare-data``: parse options, call the service, show progress and a summary table.

``--format`` and the options of each format come from the format registry
(:mod:`sam2tool.data.formats`): :func:`prepare_data_command` adds them to the options written here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from sam2tool.cli.reporting import DebugOption, choice_members, console, progress_bar, reporting_errors
from sam2tool.data.formats import FORMATS, get_format
from sam2tool.data.formats.base import OptionSpec
from sam2tool.data.formats.registry import options_of, read_options


def _prepare_data(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="SOURCE OUTPUT: the source folder (the JSON file for coco) and the folder to create "
            "(for --format synthetic only OUTPUT).",
            show_default=False,
        ),
    ],
    format: Annotated[str, typer.Option("--format", "-f")],  # choices and help: prepare_data_command
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
    debug: DebugOption = False,
    **format_options: Any,
) -> None:
    """Convert annotations (DAVIS, YouTube-VOS/MOSE, SA-V, COCO, synthetic) into the training layout."""
    from rich.table import Table

    from sam2tool.errors import UsageError
    from sam2tool.services.prepare_data import PrepareOptions
    from sam2tool.services.prepare_data import prepare_data as run

    with reporting_errors(debug):
        takes_source = get_format(format).source_kind != "none"
        if len(paths) != (2 if takes_source else 1):
            expected = "SOURCE OUTPUT" if takes_source else "OUTPUT"
            raise UsageError(f"--format {format} takes {expected}, got {len(paths)} path(s)")
        source, output = (paths[0], paths[1]) if takes_source else (None, paths[0])
        options = PrepareOptions(
            format=format,
            format_options=read_options(format, format_options),
            val_fraction=val_fraction,
            val_videos=[v.strip() for v in val_videos.split(",") if v.strip()] if val_videos else (),
            seed=seed,
            skip_bad=skip_bad,
            force=force,
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


def prepare_data_command() -> Callable[..., None]:
    """``prepare-data`` for the formats registered now.

    ``--format`` lists them with their summaries; the options of each (the fields of its
    ``Options``) come before ``--debug``, format after format.
    """
    signature = inspect.signature(_prepare_data, eval_str=True)
    *common, debug, _ = signature.parameters.values()  # the last is **format_options
    names = Enum("FormatName", choice_members(FORMATS), type=str)  # type: ignore[misc]
    summaries = "; ".join(f"{name}: {format.summary}" for name, format in FORMATS.items())
    choice = typer.Option("--format", "-f", help=f"Source format: {summaries}.")
    common = [p.replace(annotation=Annotated[names, choice]) if p.name == "format" else p for p in common]
    added = [_option_parameter(*option) for format in FORMATS.values() for option in options_of(format)]

    @functools.wraps(_prepare_data)
    def prepare_data(**values: Any) -> None:
        _prepare_data(**{name: v.value if isinstance(v, Enum) else v for name, v in values.items()})

    prepare_data.__signature__ = signature.replace(parameters=[*common, *added, debug])  # type: ignore[attr-defined]
    return prepare_data


def _option_parameter(name: str, value_type: Any, spec: OptionSpec) -> inspect.Parameter:
    """The ``--<name>`` option of a format, as Typer reads it from a signature."""
    default = spec.default
    if spec.choices:
        choices = Enum(name.title().replace("_", ""), choice_members(spec.choices), type=str)  # type: ignore[misc]
        value_type, default = choices, None if default is None else choices[default]
    elif spec.parse is not None:
        value_type = str
    flag = "--" + name.replace("_", "-")
    annotation = Annotated[value_type, typer.Option(flag, help=spec.help, min=spec.min)]
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


prepare_data = prepare_data_command()
