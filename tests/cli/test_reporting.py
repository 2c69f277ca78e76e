"""Errors become one line and an exit code; tracebacks only with --debug."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sam2tool.cli.reporting import DebugOption, reporting_errors
from sam2tool.config.problems import ConfigError
from sam2tool.errors import CheckpointError, UsageError

runner = CliRunner()


def make_app(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def fail(debug: DebugOption = False) -> None:
        with reporting_errors(debug):
            raise exc

    return app


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (CheckpointError("checkpoint x.pt is truncated"), 1, "error: checkpoint x.pt is truncated"),
        (UsageError("bad flag"), 2, "error: bad flag"),
        (ConfigError.single("a.b", "is wrong", value=3), 2, "error: a.b: is wrong (got 3)"),
        (ValueError("boom"), 1, "error: unexpected ValueError: boom (run again with --debug for the traceback)"),
    ],
)
def test_errors_map_to_exit_codes_without_traceback(exc: Exception, code: int, text: str) -> None:
    result = runner.invoke(make_app(exc), [])
    assert result.exit_code == code
    assert text in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback() -> None:
    result = runner.invoke(make_app(CheckpointError("checkpoint x.pt is truncated")), ["--debug"])
    assert result.exit_code == 1
    assert "Traceback" in result.output
    assert "error: checkpoint x.pt is truncated" in result.output


def test_debug_lets_unexpected_errors_through() -> None:
    result = runner.invoke(make_app(ValueError("boom")), ["--debug"])
    assert isinstance(result.exception, ValueError)
