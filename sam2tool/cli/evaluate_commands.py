"""``evaluate``: score predicted masks against ground truth (DAVIS or SA-V protocol)."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from sam2tool.cli.predict_commands import AUTO_DEVICE, DeviceName
from sam2tool.cli.reporting import DebugOption, Overrides, choice_members, console, progress_bar, reporting_errors
from sam2tool.config.choices import EvalProtocol, PromptKind

#: The sections of ``evaluate --help``: the options of each mode, and those both take.
SCORE_MODE = "Score mode: predicted masks against ground truth"
MODEL_MODE = "Model mode: a model on held-out videos"
BOTH_MODE = "Both modes"


ProtocolName = Enum("ProtocolName", choice_members(EvalProtocol), type=str)  # type: ignore[misc]
_DAVIS = ProtocolName("davis")
PromptName = Enum("PromptName", choice_members(PromptKind), type=str)  # type: ignore[misc]
_MASK_PROMPT = PromptName("mask")


def evaluate(
    overrides: Overrides = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            rich_help_panel=SCORE_MODE,
            help="Score mode: folder of predicted masks <video>/<frame>.png.",
        ),
    ] = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            "--ground-truth",
            rich_help_panel=SCORE_MODE,
            help="Score mode: a folder written by prepare-data (scores its --split), a folder with "
            "Annotations/, or a folder of <video>/ mask folders.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", rich_help_panel=MODEL_MODE, help="Model mode: the config of the model (and of dataset.root)."
        ),
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            rich_help_panel=MODEL_MODE,
            help="Model mode: weights to evaluate instead of model.checkpoint.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", rich_help_panel=MODEL_MODE, help="Model mode: prepared data folder (default: dataset.root)."
        ),
    ] = None,
    prompt: Annotated[
        PromptName,
        typer.Option(
            "--prompt",
            rich_help_panel=MODEL_MODE,
            help="Model mode: prompt each object with its first ground-truth mask, box or point.",
        ),
    ] = _MASK_PROMPT,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            rich_help_panel=MODEL_MODE,
            help="Model mode: also evaluate the config's model.checkpoint and compare.",
        ),
    ] = False,
    device: Annotated[
        DeviceName, typer.Option("--device", rich_help_panel=MODEL_MODE, help="Model mode: auto, cpu, cuda or mps.")
    ] = AUTO_DEVICE,
    devices: Annotated[
        int,
        typer.Option(
            "--devices",
            rich_help_panel=MODEL_MODE,
            min=1,
            help="Model mode: share the videos out over N processes (GPUs, or processes on the CPU); "
            "under torchrun or srun, the processes per node.",
        ),
    ] = 1,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            rich_help_panel=BOTH_MODE,
            help="Where to write results.json, results.csv and jf_per_video.png "
            "(default: <predictions>_evaluation beside the predictions).",
        ),
    ] = None,
    protocol: Annotated[
        ProtocolName,
        typer.Option(
            "--protocol",
            rich_help_panel=BOTH_MODE,
            help="davis (davis2017-evaluation) or sav (objects may appear later; SA-V/MOSE).",
        ),
    ] = _DAVIS,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", rich_help_panel=BOTH_MODE, help="Split of a prepare-data folder to score (default: val)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", rich_help_panel=BOTH_MODE, min=1, help="Scoring processes.")] = 1,
    json_output: Annotated[
        bool, typer.Option("--json", rich_help_panel=BOTH_MODE, help="Print results.json instead of tables.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Score masks, or a model on held-out videos, with DAVIS-exact J, F and J&F."""
    from sam2tool.errors import UsageError
    from sam2tool.metrics.statistics import finite
    from sam2tool.services.evaluate import environment_rank, evaluate_checkpoint, evaluate_predictions

    quiet = environment_rank() != 0  # a process for another device (--devices): rank 0 prints
    with reporting_errors(debug):
        with progress_bar(disable=json_output or quiet) as progress:
            task = progress.add_task("Scoring", total=None)

            def on_video(name: str, index: int, total: int) -> None:
                progress.update(task, completed=index, total=total, description=f"{name}")

            common: dict[str, Any] = {"protocol": protocol.value, "split": split, "workers": workers}
            if predictions is not None or ground_truth is not None:
                if predictions is None or ground_truth is None or config is not None:
                    raise UsageError("score mode takes --predictions and --ground-truth (and no --config)")
                if overrides:
                    raise UsageError(
                        f"{overrides[0]}: key.path=value settings change the model of model mode (--config); "
                        "score mode takes none"
                    )
                if devices != 1:
                    raise UsageError("--devices shares out the videos a model predicts: model mode (--config)")
                evaluation = evaluate_predictions(predictions, ground_truth, output, **common, on_video=on_video)
            else:
                if config is None:
                    raise UsageError("give --predictions and --ground-truth (score mode), or --config (model mode)")
                evaluation = evaluate_checkpoint(
                    config,
                    output,
                    overrides=overrides or [],
                    data=data,
                    checkpoint=checkpoint,
                    baseline=baseline,
                    kind=prompt.value,
                    device=device.value,
                    devices=devices,
                    **common,
                    on_video=on_video,
                )
        reports = evaluation.reports
        if not reports:  # another rank than 0: rank 0 wrote and prints the report
            return
        if json_output:
            documents = {name: r.to_json() for name, r in reports.items()}
            console.print_json(json.dumps(finite(next(iter(documents.values())) if len(documents) == 1 else documents)))
            return
        for name, report in reports.items():
            _print_table(report, f"{protocol.value.upper()} protocol, {name}: per object")
        if len(reports) == 2:
            _print_comparison(reports)
        console.print(f"Wrote the reports to {evaluation.output}", markup=False, highlight=False)


def _print_table(report: Any, title: str) -> None:
    from rich.table import Table

    from sam2tool.services.evaluate import RESULT_KEYS

    table = Table(title=title)
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


def _print_comparison(reports: dict[str, Any]) -> None:
    from rich.table import Table

    before, after = reports["baseline"], reports["finetuned"]
    table = Table(title="Before and after fine-tuning")
    for column in ("video", "J&F before", "J&F after", "change"):
        table.add_column(column, justify="left" if column == "video" else "right")
    after_by_video = {row["video"]: row for row in after.per_video}
    for row in before.per_video:
        new = after_by_video[row["video"]]
        table.add_row(row["video"], _fmt(row["J&F"]), _fmt(new["J&F"]), _fmt(new["J&F"] - row["J&F"], signed=True))
    table.add_section()
    old_total, new_total = before.overall["J&F"], after.overall["J&F"]
    table.add_row("overall", _fmt(old_total), _fmt(new_total), _fmt(new_total - old_total, signed=True), style="bold")
    console.print(table)


def _fmt(value: object, signed: bool = False) -> str:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        return "n/a"
    return f"{number:+.3f}" if signed else f"{number:.3f}"
