"""The ``sam2tool`` command line: one registry of thin commands, nothing else.

Each command parses options, calls one service and renders its result. Heavy libraries (torch,
sam2) are imported inside the service calls so that ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from sam2tool import __version__
from sam2tool.cli import (
    config_commands,
    data_commands,
    evaluate_commands,
    export_commands,
    predict_commands,
    train_commands,
)

#: Command name -> function. docs/commands.md documents exactly these commands and their options (tests check it).
COMMANDS: dict[str, Callable[..., Any]] = {
    "init-config": config_commands.init_config,
    "validate-config": config_commands.validate_config,
    "prepare-data": data_commands.prepare_data,
    "train": train_commands.train,
    "resume": train_commands.resume,
    "evaluate": evaluate_commands.evaluate,
    "export": export_commands.export,
    "predict-video": predict_commands.predict_video,
}

app = typer.Typer(
    name="sam2tool",
    help="Fine-tune, evaluate, export and run SAM 2 / SAM 2.1 on your own videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _name, _function in COMMANDS.items():
    app.command(_name)(_function)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sam2tool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Fine-tune, evaluate, export and run SAM 2 / SAM 2.1 on your own videos."""


def main() -> None:
    """Entry point of the ``sam2tool`` executable."""
    app()
