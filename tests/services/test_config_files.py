"""validate-config --check-paths against real checkpoint files."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.schema import ModelSettings
from sam2tool.models.build import build_model
from sam2tool.models.checkpoints import save_official_checkpoint
from sam2tool.services.config_files import validate_configs

runner = CliRunner()


def config_for(tmp_path: Path, checkpoint: Path, size: str = "micro") -> Path:
    path = tmp_path / f"{checkpoint.stem}.yaml"
    path.write_text(f"model:\n  size: {size}\n  checkpoint: {checkpoint}\ndataset:\n  image_size: 64\n")
    return path


def test_matching_checkpoint_passes(tmp_path: Path) -> None:
    checkpoint = tmp_path / "micro.pt"
    save_official_checkpoint(build_model(ModelSettings(size="micro", checkpoint=None), 64).model, checkpoint)
    (report,) = validate_configs([config_for(tmp_path, checkpoint)], check_paths=True)
    assert report.ok, report.problems


def test_checkpoint_of_another_size_is_a_problem(tmp_path: Path) -> None:
    checkpoint = tmp_path / "v2.pt"
    save_official_checkpoint(
        build_model(ModelSettings(size="micro", version="sam2", checkpoint=None), 64).model, checkpoint
    )
    config = config_for(tmp_path, checkpoint)
    result = runner.invoke(app, ["validate-config", "--check-paths", str(config)])
    assert result.exit_code == 2
    assert f"{config}:3: model.checkpoint: checkpoint {checkpoint} does not fit SAM 2.1 micro" in result.output
    assert "it looks like SAM 2 micro" in result.output


def test_malicious_checkpoint_is_a_problem_and_never_runs(tmp_path: Path) -> None:
    from tests.models.test_checkpoints import Exploit

    marker = tmp_path / "marker.txt"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Exploit(marker)}, checkpoint)
    result = runner.invoke(app, ["validate-config", "--check-paths", str(config_for(tmp_path, checkpoint))])
    assert result.exit_code == 2
    assert "refused to load" in result.output
    assert not marker.exists()


def test_dataset_folder_without_manifest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  size: micro\n  checkpoint: null\ndataset:\n  root: {data}\n")
    (report,) = validate_configs([config], check_paths=True)
    messages = [p.message for p in report.problems]
    assert f"{data} has no manifest.json; is it a folder written by `sam2tool prepare-data`?" in messages
    assert f"{data} has no splits/train.txt; is it a folder written by `sam2tool prepare-data`?" in messages


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  size: micro\n  checkpoint: null\noutput:\n  dir: {tmp_path / 'out'}\n")
    (report,) = validate_configs([config], check_paths=True)
    assert [p.key for p in report.problems] == ["output.dir"]


def test_trainable_modules_are_checked_under_their_own_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  size: micro\n  version: sam2\n  checkpoint: null\n  trainable_modules: [no_obj_embed_spatial]\n"
    )
    (report,) = validate_configs([config], check_paths=True)
    (problem,) = report.problems
    assert problem.key == "model.trainable_modules"
    assert problem.source == f"{config}:5"
    assert problem.render().count("(got") == 1


def test_checkpoint_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (report,) = validate_configs([config_for(tmp_path, tmp_path / "ckpt")], check_paths=True)
    assert "is a folder, not a checkpoint file" in report.problems[0].message


def test_dataset_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  size: micro\n  checkpoint: null\ndataset:\n  root: {tmp_path / 'data'}\n")
    (report,) = validate_configs([config], check_paths=True)
    assert "is a file; give the folder written by `sam2tool prepare-data`" in report.problems[0].message


def test_the_micro_preset_checks_the_packaged_base_without_a_download_note(tmp_path: Path) -> None:
    config = tmp_path / "micro.yaml"
    assert runner.invoke(app, ["init-config", str(config), "--preset", "micro"]).exit_code == 0
    (report,) = validate_configs([config], check_paths=True)
    assert report.ok, report.problems
    assert not any("cache" in note or "download" in note for note in report.notes), report.notes
