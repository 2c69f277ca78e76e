"""evaluate in model mode: predict the held-out videos from their ground truth, then score."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.schema import ModelSettings
from sam2tool.models.build import build_model
from sam2tool.models.checkpoints import save_official_checkpoint
from tests.conftest import prepare_synthetic

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("em")
    data = prepare_synthetic(root / "data", val_fraction=0.5)
    config = root / "micro.yaml"
    runner.invoke(app, ["init-config", str(config), "-p", "micro"])
    config.write_text(
        config.read_text().replace("  root: null", f"  root: {data}").replace("image_size: 128", "image_size: 64")
    )
    torch.manual_seed(5)
    checkpoint = root / "tuned.pt"
    save_official_checkpoint(build_model(ModelSettings(size="micro", checkpoint=None), 64).model, checkpoint)
    return data, config, checkpoint


@pytest.mark.parametrize("prompt", ["mask", "box", "point"])
def test_model_mode_writes_predictions_and_reports(setup: tuple[Path, Path, Path], tmp_path: Path, prompt: str) -> None:
    data, config, _ = setup
    result = runner.invoke(
        app, ["evaluate", "--config", str(config), "--output", str(tmp_path / "ev"), "--prompt", prompt]
    )
    assert result.exit_code == 0, result.output
    val = (data / "splits/val.txt").read_text().split()
    for video in val:
        frames = sorted(p.stem for p in (data / "JPEGImages" / video).glob("*.jpg"))
        assert sorted(p.stem for p in (tmp_path / "ev/model/predictions" / video).glob("*.png")) == frames
    report = json.loads((tmp_path / "ev/model/results.json").read_text())
    assert {row["video"] for row in report["per_object"]} == set(val)
    assert 0.0 <= report["overall"]["J&F"] <= 1.0


def test_baseline_compares_before_and_after(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, config, checkpoint = setup
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--config",
            str(config),
            "--checkpoint",
            str(checkpoint),
            "--baseline",
            "--output",
            str(tmp_path / "ev"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Before and after fine-tuning" in result.output
    comparison = json.loads((tmp_path / "ev/comparison.json").read_text())
    assert set(comparison) == {"baseline", "finetuned"}
    assert (tmp_path / "ev/baseline/results.json").is_file() and (tmp_path / "ev/finetuned/results.json").is_file()
    chart = cv2.imread(str(tmp_path / "ev/comparison.png"))
    videos = len(json.loads((tmp_path / "ev/finetuned/results.json").read_text())["per_video"])
    assert chart is not None and chart.shape[0] >= 67 + videos * 38  # two bars (before, after) per video


def test_model_mode_usage_errors(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, config, _ = setup
    result = runner.invoke(app, ["evaluate", "--config", str(config), "--baseline"])
    assert result.exit_code == 2 and "give --checkpoint" in result.output
    assert runner.invoke(app, ["evaluate"]).exit_code == 2
    result = runner.invoke(app, ["evaluate", "--config", str(config), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "is not a folder written by prepare-data" in result.output
