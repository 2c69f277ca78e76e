"""``init-config`` and ``validate-config``: parse options, call the service, render the result."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sam2tool.cli.reporting import DebugOption, choice_members, console, reporting_errors
from sam2tool.config.presets import DEFAULT_PRESET, PRESETS

PresetName = Enum("PresetName", choice_members(PRESETS), type=str)  # type: ignore[misc]
_DEFAULT_PRESET = PresetName(DEFAULT_PRESET)

_PRESET_HELP = (
    "Starting point: tiny, small, base_plus or large (SAM 2.1 from Meta's checkpoints), micro (the 2.6 M "
    "parameter base packaged with sam2tool, for CPU demos and tests), micro_pretrain (how that base was "
    "pretrained) or mose_finetune (Meta's SAM 2.1 MOSE fine-tune recipe)."
)


def init_config(
    path: Annotated[Path, typer.Argument(help="File to write.", dir_okay=False)] = Path("sam2tool.yaml"),
    preset: Annotated[PresetName, typer.Option("--preset", "-p", help=_PRESET_HELP)] = _DEFAULT_PRESET,
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
    debug: DebugOption = False,
) -> None:
    """Write a commented YAML config for a preset (SAM 2.1 sizes or micro)."""
    from sam2tool.services.config_files import init_config as run

    with reporting_errors(debug):
        result = run(path, preset=preset.value, force=force)
        verb = "Overwrote" if result.overwritten else "Wrote"
        console.print(f"{verb} {result.path} (preset '{result.preset}').", markup=False, highlight=False)
        console.print(f"Check it with: sam2tool validate-config {result.path}", markup=False, highlight=False)


def validate_config(
    files: Annotated[list[Path], typer.Argument(help="Config files to check.", dir_okay=False)],
    check_paths: Annotated[
        bool,
        typer.Option(
            "--check-paths",
            help="Also check that dataset.root is a prepare-data folder and that model.checkpoint exists, "
            "loads safely and fits the configured model (imports torch).",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON report {ok, files: [{path, ok, problems, notes}]}.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Check config files and report every problem at once (exit code 2 if any)."""
    from sam2tool.services.config_files import validate_configs

    with reporting_errors(debug):
        reports = validate_configs(files, check_paths=check_paths)
        ok = all(report.ok for report in reports)
        if json_output:
            console.print_json(json.dumps({"ok": ok, "files": [report.to_json() for report in reports]}))
        else:
            for report in reports:
                if report.ok:
                    console.print(f"{report.path}: well-formed", style="green", markup=False, highlight=False)
                else:
                    count = len(report.problems)
                    console.print(
                        f"{report.path}: {count} problem{'s' if count != 1 else ''}",
                        style="bold red",
                        markup=False,
                        highlight=False,
                    )
                    for problem in report.problems:
                        console.print(f"  {problem.render()}", markup=False, highlight=False)
                for note in report.notes:
                    console.print(f"  note: {note}", style="yellow", markup=False, highlight=False)
        if not ok:
            raise typer.Exit(2)
