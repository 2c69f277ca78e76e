"""init-config and validate-config as a user runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.loading import load_settings
from sam2tool.config.presets import PRESETS

runner = CliRunner()
WriteFile = Callable[[str, str], Path]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_init_config_writes_a_commented_file_that_validates(tmp_path: Path, preset: str) -> None:
    path = tmp_path / "cfg" / "run.yaml"
    result = runner.invoke(app, ["init-config", str(path), "--preset", preset])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert f"preset '{preset}'" in text
    # Every key is preceded by its documentation.
    assert "  # Frames per training clip.\n  video_clip_length:" in text
    assert "# Which SAM 2 model to build" in text
    settings = load_settings(path)
    assert settings.model.size == PRESETS[preset].values["model"]["size"]
    assert runner.invoke(app, ["validate-config", str(path)]).exit_code == 0
    assert not [p for p in path.parent.iterdir() if p.name != "run.yaml"], "temporary files left behind"


def test_init_config_default_path_and_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init-config"])
    assert result.exit_code == 0
    assert "preset 'tiny'" in (tmp_path / "sam2tool.yaml").read_text()


def test_init_config_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("mine\n")
    result = runner.invoke(app, ["init-config", str(path)])
    assert result.exit_code == 2
    assert "already exists; pass --force to overwrite it" in result.output
    assert path.read_text() == "mine\n"
    result = runner.invoke(app, ["init-config", str(path), "--force", "--preset", "micro"])
    assert result.exit_code == 0
    assert "Overwrote" in result.output
    assert load_settings(path).model.size == "micro"


def test_init_config_unknown_preset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init-config", str(tmp_path / "x.yaml"), "--preset", "huge"])
    assert result.exit_code == 2
    assert "huge" in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_init_config_into_a_folder_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init-config", str(tmp_path)])
    assert result.exit_code == 2


def test_validate_config_well_formed(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    runner.invoke(app, ["init-config", str(path)])
    result = runner.invoke(app, ["validate-config", str(path)])
    assert result.exit_code == 0
    assert result.output.strip() == f"{path}: well-formed"


def test_validate_config_reports_every_problem_of_every_file(tmp_path: Path, write_file: WriteFile) -> None:
    good = tmp_path / "good.yaml"
    runner.invoke(app, ["init-config", str(good)])
    bad = write_file("bad.yaml", "model:\n  sise: tiny\ndataset:\n  image_size: 500\noptimizer:\n  lr: -1\n")
    broken = write_file("broken.yaml", "model:\n  size: [tiny\n")
    result = runner.invoke(app, ["validate-config", str(good), str(bad), str(broken), str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    out = result.output
    assert f"{good}: well-formed" in out
    assert f"{bad}: 3 problems" in out
    assert f"{bad}:2: model.sise: unknown key; did you mean 'model.size'?" in out
    assert f"{bad}:4: dataset.image_size: 500 is not a multiple of 32" in out
    assert f"{bad}:6: optimizer.lr: input should be greater than 0 (got -1)" in out
    assert f"YAML syntax error at {broken}:3" in out
    assert "missing.yaml does not exist" in out
    assert "Traceback" not in out


def test_validate_config_json(tmp_path: Path, write_file: WriteFile) -> None:
    good = tmp_path / "good.yaml"
    runner.invoke(app, ["init-config", str(good)])
    bad = write_file("bad.yaml", "dataset:\n  image_size: 500\n")
    result = runner.invoke(app, ["validate-config", "--json", str(good), str(bad)])
    assert result.exit_code == 2
    report = json.loads(result.output)
    assert report["ok"] is False
    assert [f["ok"] for f in report["files"]] == [True, False]
    (problem,) = report["files"][1]["problems"]
    assert problem["key"] == "dataset.image_size"
    assert problem["value"] == 500
    assert problem["source"] == f"{bad}:2"
    assert "multiple of 32" in problem["message"]


def test_validate_config_needs_a_file() -> None:
    assert runner.invoke(app, ["validate-config"]).exit_code == 2


def test_validate_config_check_paths(tmp_path: Path, write_file: WriteFile) -> None:
    data = tmp_path / "data"
    path = write_file(
        "run.yaml",
        f"model:\n  size: micro\n  checkpoint: {tmp_path / 'nope.pt'}\ndataset:\n  root: {data}\n  image_size: 64\n",
    )
    result = runner.invoke(app, ["validate-config", "--check-paths", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5: dataset.root: folder {data} does not exist" in result.output
    assert f"{path}:3: model.checkpoint: {tmp_path / 'nope.pt'} does not exist" in result.output
    # Without --check-paths the same file is well-formed.
    assert runner.invoke(app, ["validate-config", str(path)]).exit_code == 0

    for name in ("manifest.json", "splits/train.txt", "splits/val.txt"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text("{}" if name.endswith("json") else "video\n")
    write_file("run.yaml", f"model:\n  size: micro\n  checkpoint: null\ndataset:\n  root: {data}\n  image_size: 64\n")
    result = runner.invoke(app, ["validate-config", "--check-paths", str(path)])
    assert result.exit_code == 0, result.output
    assert "note: model.checkpoint is null" in result.output


def test_validate_config_check_paths_on_official_checkpoint_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    runner.invoke(app, ["init-config", str(path), "--preset", "large"])
    result = runner.invoke(app, ["validate-config", "--check-paths", str(path)])
    assert result.exit_code == 0
    assert "sam2.1_hiera_large.pt is not in the cache yet; it will be downloaded" in result.output


def test_validate_config_applies_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.yaml"
    runner.invoke(app, ["init-config", str(path)])
    monkeypatch.setenv("SAM2TOOL_DATASET__IMAGE_SIZE", "500")
    result = runner.invoke(app, ["validate-config", str(path)])
    assert result.exit_code == 2
    assert "environment variable SAM2TOOL_DATASET__IMAGE_SIZE: dataset.image_size: 500 is not a multiple of 32" in (
        result.output
    )


def test_init_config_ignores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_DATASET__IMAGE_SIZE", "500")
    monkeypatch.setenv("SAM2TOOL_OPTIMIZER__LR", "0.5")
    path = tmp_path / "run.yaml"
    result = runner.invoke(app, ["init-config", str(path), "--preset", "micro"])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "  image_size: 128\n" in text
    assert "  lr: 0.0003\n" in text


def test_validate_config_keeps_going_after_a_file_with_odd_keys(tmp_path: Path, write_file: WriteFile) -> None:
    odd = write_file("odd.yaml", "1: x\n")
    good = tmp_path / "good.yaml"
    runner.invoke(app, ["init-config", str(good)])
    result = runner.invoke(app, ["validate-config", "--json", str(odd), str(good)])
    assert result.exit_code == 2
    report = json.loads(result.output)
    assert [f["ok"] for f in report["files"]] == [False, True]
