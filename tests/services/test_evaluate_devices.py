"""evaluate --devices N: the held-out videos shared out over N processes (DDP, gloo on the CPU), rank 0 reports.

Lightning launches the other ranks by re-running the command, so these tests run the real CLI in
a subprocess. The model is the packaged micro base at its size; the data are ``base_data``'s two
held-out videos.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from sam2tool.cli import app
from tests.conftest import REPO

runner = CliRunner()

#: The parts of results.json that do not name the output folder.
SCORES = ("protocol", "overall", "per_video", "per_object")


def sam2tool(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m sam2tool ARGS`` with this checkout, one thread per process, no SAM2TOOL_* settings."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith(("SAM2TOOL_", "_SAM2TOOL_"))}
    environment.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    command = [sys.executable, "-m", "sam2tool", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def config(base_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro preset (the packaged base, 128 px) on ``base_data``."""
    path = tmp_path_factory.mktemp("devices") / "micro.yaml"
    assert runner.invoke(app, ["init-config", str(path), "-p", "micro"]).exit_code == 0
    path.write_text(path.read_text().replace("  root: null", f"  root: {base_data}"))
    return path


@pytest.fixture(scope="module")
def one_process(config: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """results.json of the same evaluation in this one process (one thread, as each rank has)."""
    output = tmp_path_factory.mktemp("one") / "ev"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = runner.invoke(app, ["evaluate", "--config", str(config), "--output", str(output), "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads((output / "model/results.json").read_text())
    return report


def check_same_report(output: Path, one_process: dict[str, Any], videos: list[str]) -> dict[str, Any]:
    written: dict[str, Any] = json.loads((output / "model/results.json").read_text())
    assert {key: written[key] for key in SCORES} == {key: one_process[key] for key in SCORES}
    assert [row["video"] for row in written["per_video"]] == videos
    for video in videos:
        assert len(list((output / "model/predictions" / video).glob("*.png"))) == 8
    return written


def test_two_cpu_processes_write_the_report_of_one(
    config: Path, base_data: Path, one_process: dict[str, Any], tmp_path: Path
) -> None:
    output = tmp_path / "ev"
    result = sam2tool("evaluate", "--config", config, "--output", output, "--device", "cpu", "--devices", 2, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Starting with 2 processes" in result.stderr
    videos = (base_data / "splits/val.txt").read_text().split()
    written = check_same_report(output, one_process, videos)
    assert json.loads(result.stdout) == written  # one document: only rank 0 prints


@pytest.mark.slow
def test_more_devices_than_videos_leaves_ranks_idle(
    config: Path, base_data: Path, one_process: dict[str, Any], tmp_path: Path
) -> None:
    videos = (base_data / "splits/val.txt").read_text().split()
    assert len(videos) == 2
    output = tmp_path / "ev"
    result = sam2tool("evaluate", "--config", config, "--output", output, "--device", "cpu", "--devices", 3)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Starting with 3 processes" in result.stderr
    check_same_report(output, one_process, videos)
    assert result.stdout.count("Wrote the reports to") == 1


def test_a_failing_rank_stops_every_rank_and_rank_0_names_it(config: Path, base_data: Path, tmp_path: Path) -> None:
    data = shutil.copytree(base_data, tmp_path / "data")
    second = (data / "splits/val.txt").read_text().split()[1]  # rank 1's video
    (data / "JPEGImages" / second / "00003.jpg").write_bytes(b"not a JPEG")
    output = tmp_path / "ev"
    command = ("evaluate", "--config", config, "--data", data, "--output", output, "--device", "cpu", "--devices", 2)
    result = sam2tool(*command, timeout=240)  # a rank left waiting on the failed one would time out
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: rank 1 of 2:" in result.stderr and "00003.jpg" in result.stderr
    assert not (output / "model/results.json").exists()


def test_devices_usage_errors(config: Path, base_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--config", str(config), "--devices", "0"])
    assert result.exit_code == 2
    scored = ["evaluate", "--predictions", str(tmp_path), "--ground-truth", str(base_data), "--devices", "2"]
    result = runner.invoke(app, scored)
    assert result.exit_code == 2 and "model mode" in result.output
    # no machine has 64 GPUs: refused before any process starts
    result = runner.invoke(app, ["evaluate", "--config", str(config), "--devices", "64", "--device", "cuda"])
    assert result.exit_code == 2, result.output
