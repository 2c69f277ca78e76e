"""The pretraining recipe of the packaged base (`nox -s pretrain`), shortened: the model learns to track."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.training.run_files import read_metrics
from tests.conftest import REPO

runner = CliRunner()


@pytest.mark.slow
def test_a_shortened_pretraining_recipe_learns_to_track(tmp_path: Path) -> None:
    data = tmp_path / "data"
    command = ["prepare-data", str(data), "--format", "synthetic", "--num-videos", "60", "--frames", "16"]
    result = runner.invoke(app, [*command, "--size", "128", "--seed", "0", "--val-fraction", "0.1"])
    assert result.exit_code == 0, result.output
    config = REPO / "configs" / "micro_pretrain.yaml"
    # one epoch (54 training videos x 20 clips in batches of 4 = 270 steps), validated once at its end
    shortened = ["trainer.max_steps=270", "dataset.multiplier=20", "scheduler.warmup_steps=30"]
    result = runner.invoke(
        app,
        ["train", "--config", str(config), f"dataset.root={data}", *shortened, "logging.progress=false",
         "--output-dir", str(tmp_path / "runs")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (metrics,) = (tmp_path / "runs").glob("*/*/metrics.csv")
    rows = read_metrics(metrics)
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert statistics.mean(losses[-3:]) < 0.8 * statistics.mean(losses[:3])
    (validation,) = [float(r["val/J&F"]) for r in rows if r["val/J&F"]]
    assert validation > 0.1  # random weights score 0: every object is scored absent
