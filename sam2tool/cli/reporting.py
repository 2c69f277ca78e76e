"""How commands talk to the terminal: consoles, logging, choices, and turning errors into exit codes.

Errors a user can cause are printed as one clear line each, with exit code 2 (usage/config) or
1 (runtime). Tracebacks appear only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import traceback
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, get_args, get_origin

import typer
from rich.console import Console

from sam2tool.errors import Sam2ToolError, Terminated

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DebugOption = Annotated[bool, typer.Option("--debug", help="Show debug logs and full tracebacks.")]
#: ``key.path=value`` settings on the command line: train, resume, predict-video, evaluate and export take them.
Overrides = Annotated[
    list[str] | None,
    typer.Argument(
        help="Settings as key.path=value, e.g. optimizer.lr=3e-5 dataset.image_size=512.", show_default=False
    ),
]


def choice_members(choices: Any) -> dict[str, str]:
    """Members of the str enum that typer shows and checks for a flag: one per value of ``choices``.

    ``choices`` is a ``Literal`` type of :mod:`sam2tool.config.choices` or the names of a registry,
    so a flag offers exactly what the code below it accepts (tests/cli/test_choices.py).
    """
    values: Iterable[Any] = get_args(choices) if get_origin(choices) is not None else choices
    return {str(value): str(value) for value in values}


def progress_bar(*extra: Any, disable: bool = False) -> Any:
    """The progress bar of every long loop: description, bar, done/total, elapsed, then ``extra`` columns."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), *extra)
    return Progress(*columns, console=console, transient=True, disable=disable)


def configure_logging(debug: bool, level: str = "WARNING") -> None:
    """Send sam2tool's logs to stderr through rich; ``--debug`` lowers the level to DEBUG."""
    from rich.logging import RichHandler

    logger = logging.getLogger("sam2tool")
    logger.handlers[:] = [RichHandler(console=err_console, show_path=debug, markup=False, rich_tracebacks=debug)]
    logger.setLevel(logging.DEBUG if debug else level)
    logger.propagate = False


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr (each line of a multi-line message prefixed)."""
    for line in message.splitlines() or [""]:
        err_console.print(f"error: {line}", style="bold red", markup=False, highlight=False)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def reporting_errors(debug: bool) -> Iterator[None]:
    """Run a command body, turning exceptions into a message and an exit code.

    SIGTERM unwinds the body like Ctrl-C does (temporary outputs are removed) and exits with 143.
    """
    configure_logging(debug)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Sam2ToolError as exc:
        if debug:
            err_console.print(traceback.format_exc(), markup=False, highlight=False)
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(130) from None
    except Terminated as exc:
        print_error(str(exc))
        raise typer.Exit(143) from None
    except Exception as exc:
        if debug:
            raise
        print_error(f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
