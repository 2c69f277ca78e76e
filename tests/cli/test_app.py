"""The command registry: what --help lists, --version, and that --help stays light."""

from __future__ import annotations

import re
import subprocess
import sys

from typer.testing import CliRunner

from sam2tool import __version__
from sam2tool.cli import COMMANDS, app
from tests.conftest import REPO

runner = CliRunner()


def test_help_lists_exactly_the_registered_commands_with_summaries() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"{name}\s+\S", result.output), f"{name} has no one-line summary in --help"
    listed = set(re.findall(r"│ ([a-z]+(?:-[a-z]+)+|[a-z]{4,}) {2,}", result.output))
    assert listed == set(COMMANDS)


def test_commands_reference_documents_exactly_the_registered_commands() -> None:
    reference = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `sam2tool ([a-z-]+)", reference, flags=re.MULTILINE))
    assert documented == set(COMMANDS)


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "init-config" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"sam2tool {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["trian"])
    assert result.exit_code == 2


def test_help_does_not_import_torch_or_sam2() -> None:
    code = (
        "import sys\n"
        "from sam2tool.cli import COMMANDS, app\n"
        "for argv in [['--help']] + [[name, '--help'] for name in COMMANDS]:\n"
        "    try:\n"
        "        app(argv, prog_name='sam2tool')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in ('torch', 'sam2', 'hydra', 'lightning', 'cv2') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sam2tool", "--version"], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == f"sam2tool {__version__}"
