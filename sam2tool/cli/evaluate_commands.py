"""``evaluate``: score predicted masks against ground truth (DAVIS or SA-V protocol)."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sam2tool.cli.reporting import DebugOption, console, reporting_errors


class ProtocolName(str, Enum):
    """Scoring protocols."""

    davis = "davis"
    sav = "sav"


def evaluate(
    predictions: Annotated[
        Path, typer.Option("--predictions", help="Folder of predicted masks: <video>/<frame>.png (DAVIS palette PNGs).")
    ],
    ground_truth: Annotated[
        Path,
        typer.Option(
            "--ground-truth",
            help="Ground truth: a folder written by prepare-data (scores its --split), a folder with "
            "Annotations/, or a folder of <video>/ mask folders.",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Where to write results.json, results.csv and jf_per_video.png "
            "(default: <predictions>_evaluation beside the predictions).",
        ),
    ] = None,
    protocol: Annotated[
        ProtocolName,
        typer.Option("--protocol", help="davis (davis2017-evaluation) or sav (objects may appear later; SA-V/MOSE)."),
    ] = ProtocolName.davis,
    split: Annotated[
        str | None, typer.Option("--split", help="Split of a prepare-data folder to score (default: val).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Scoring processes.")] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="Print results.json instead of tables.")] = False,
    debug: DebugOption = False,
) -> None:
    """Score predicted masks against ground truth with DAVIS-exact J, F and J&F."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sam2tool.services.evaluate import RESULT_KEYS, score_folders, write_report

    with reporting_errors(debug):
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True, disable=json_output) as progress:
            task = progress.add_task("Scoring", total=None)

            def on_video(name: str, index: int, total: int) -> None:
                progress.update(task, completed=index, total=total, description=f"Scoring {name}")

            report = score_folders(predictions, ground_truth, protocol.value, split, workers, on_video)
        destination = output or predictions.parent / f"{predictions.name}_evaluation"
        files = write_report(report, destination)
        if json_output:
            console.print_json(json.dumps(json.loads(files[0].read_text())))
            return
        table = Table(title=f"{protocol.value.upper()} protocol: per object")
        longest = max((len(str(row["video"])) for row in report.per_object), default=5)
        table.add_column("video", no_wrap=True, min_width=min(longest, 40))
        for column in ("object", *RESULT_KEYS):
            table.add_column(column, justify="right")
        for row in report.per_object:
            table.add_row(str(row["video"]), str(row["object"]), *(_fmt(row[k]) for k in RESULT_KEYS))
        totals = report.overall
        table.add_section()
        table.add_row("overall", "", *(_fmt(totals[k]) for k in RESULT_KEYS), style="bold")
        console.print(table)
        console.print(f"Wrote {', '.join(str(f) for f in files)}", markup=False, highlight=False)


def _fmt(value: object) -> str:
    number = float(value)  # type: ignore[arg-type]
    return "n/a" if not math.isfinite(number) else f"{number:.3f}"
