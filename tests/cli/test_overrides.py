"""predict-video, evaluate and export take ``key.path=value`` settings after their options, as train does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.models.build import build_model
from sam2tool.services.export import export_settings
from tests.models.test_streaming import make_frames

runner = CliRunner()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("overrides") / "micro.yaml"
    assert runner.invoke(app, ["init-config", str(path), "-p", "micro"]).exit_code == 0
    return path


def settings_passed_to(monkeypatch: pytest.MonkeyPatch, target: str, args: list[str], position: int = 0) -> Any:
    """Run ``sam2tool ARGS`` up to ``target`` (a service function): the settings it gets."""
    seen: dict[str, Any] = {}

    def service(*positional: Any, **keywords: Any) -> None:
        seen["settings"] = positional[position]
        raise typer.Exit(0)

    monkeypatch.setattr(target, service)
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0 and "settings" in seen, result.output
    return seen["settings"]


def test_predict_video_takes_overrides_over_the_config(
    monkeypatch: pytest.MonkeyPatch, config: Path, tmp_path: Path
) -> None:
    make_frames(tmp_path / "frames", 3)
    command = ["predict-video", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--config", str(config)]
    args = [*command, "--point", "5,5", "model.checkpoint=null", "trainer.seed=7"]
    settings = settings_passed_to(monkeypatch, "sam2tool.services.predict_video.predict_video", args, position=2)
    assert settings.model.checkpoint is None and settings.trainer.seed == 7
    result = runner.invoke(app, [*command, "--point", "5,5", "model.size=huge"], terminal_width=200)
    assert result.exit_code == 2 and "model.size" in result.output


def test_flags_win_over_overrides_in_predict_video(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_frames(tmp_path / "frames", 3)
    command = ["predict-video", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--point", "5,5"]
    args = [*command, "--model", "sam2.1_micro", "--image-size", "96", "model.size=tiny", "dataset.image_size=64"]
    settings = settings_passed_to(monkeypatch, "sam2tool.services.predict_video.predict_video", args, position=2)
    assert (settings.model.size, settings.dataset.image_size) == ("micro", 96)


def test_evaluate_takes_overrides_in_model_mode_only(
    monkeypatch: pytest.MonkeyPatch, config: Path, tmp_path: Path
) -> None:
    args = [
        "evaluate",
        "--config",
        str(config),
        "--data",
        str(tmp_path),
        "model.checkpoint=null",
        "dataset.image_size=64",
    ]
    settings = settings_passed_to(monkeypatch, "sam2tool.services.evaluate.evaluate_model", args)
    assert settings.model.checkpoint is None and settings.dataset.image_size == 64
    score_mode = ["evaluate", "--predictions", str(tmp_path), "--ground-truth", str(tmp_path), "trainer.seed=1"]
    result = runner.invoke(app, score_mode, terminal_width=200)
    assert result.exit_code == 2 and "trainer.seed=1: key.path=value settings change the model of model mode" in (
        result.output
    )


def test_export_takes_overrides_over_the_settings_of_the_checkpoint(tmp_path: Path) -> None:
    model = build_model(Sam2ToolSettings(model={"size": "micro", "checkpoint": None}).model, 64).model
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pt")
    config = tmp_path / "micro.yaml"
    config.write_text("model:\n  size: micro\n  checkpoint: null\ndataset:\n  image_size: 64\n", encoding="utf-8")
    settings, _ = export_settings(tmp_path / "plain.pt", config, None, ["model.drop_path_rate=0.2"])
    assert settings.model.drop_path_rate == 0.2 and settings.model.checkpoint == str(tmp_path / "plain.pt")
    args = ["export", str(tmp_path / "plain.pt"), "-o", str(tmp_path / "e"), "--config", str(config), "model.size=huge"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 2 and "model.size" in result.output
    assert not (tmp_path / "e").exists()
