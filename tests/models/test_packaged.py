"""The pretrained micro base inside the package: found with no network, checked, usable at other sizes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.loading import load_settings
from sam2tool.config.registry import get_spec
from sam2tool.config.schema import ModelSettings
from sam2tool.errors import CheckpointError
from sam2tool.models import packaged
from sam2tool.models.build import build_model, build_video_predictor
from sam2tool.models.checkpoints import read_state_dict
from tests.models.test_streaming import make_frames

runner = CliRunner()
SPEC = get_spec("sam2.1", "micro")


@pytest.fixture
def broken_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the packaged weights folder that the test may damage."""
    folder = tmp_path / "weights"
    shutil.copytree(packaged.WEIGHTS_DIR, folder)
    monkeypatch.setattr(packaged, "WEIGHTS_DIR", folder)
    return folder


def test_official_micro_is_the_packaged_base_and_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the packaged base must not be downloaded")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    settings = load_settings(None, ["model.size=micro"])  # model.checkpoint defaults to 'official'
    built = build_model(settings.model, 128)
    weights, card = packaged.packaged_paths(SPEC)
    assert built.checkpoint == weights
    assert weights.stat().st_size < 20e6 and built.total_parameters < 10e6
    for key, value in read_state_dict(weights).items():
        assert torch.equal(built.model.state_dict()[key], value), key
    # The card says what the file is.
    data = json.loads(card.read_text())
    assert data["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert data["model"]["parameters"] == built.total_parameters
    assert data["model"]["image_size"] == 128


def test_the_base_is_named_like_an_official_checkpoint() -> None:
    by_name = build_model(ModelSettings(size="micro", checkpoint="sam2.1_micro"), 128)
    assert by_name.checkpoint == packaged.packaged_paths(SPEC)[0]
    message = load_settings_error(["model.size=micro", "model.version=sam2"])
    assert "no official checkpoint for sam2 micro" in message and "model.version=sam2.1" in message


def load_settings_error(overrides: list[str]) -> str:
    from sam2tool.config.problems import ConfigError

    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, overrides)
    return str(excinfo.value)


def one_object_video(folder: Path, frames: int = 8) -> np.ndarray:
    """A generated video of the base's own kind with one object that stays in view; returns its labels."""
    from PIL import Image

    from sam2tool.data.formats.synthetic_render import render_video

    folder.mkdir(parents=True)
    images, labels = render_video(3, frames, 128, seed=7, objects=(1, 1))
    assert all((labels[t] > 0).any() for t in range(frames))
    for t, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{t:05d}.jpg", quality=95)
    return labels


def track_iou(image_size: int, folder: Path, labels: np.ndarray) -> list[float]:
    from sam2tool.data.frames import FolderFrames

    predictor = build_video_predictor(ModelSettings(size="micro"), image_size).model
    state = predictor.init_state(FolderFrames(folder))
    predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=labels[0] == 1)
    ious = []
    for t, _, masks in predictor.propagate_in_video(state):
        mine, truth = (masks[0, 0] > 0).numpy(), labels[t] == 1
        ious.append(float((mine & truth).sum() / (mine | truth).sum()))
    return ious


def test_the_base_tracks_at_a_size_it_was_not_trained_at(tmp_path: Path) -> None:
    """Hiera interpolates its position embeddings and the memory RoPE is rebuilt for the grid."""
    labels = one_object_video(tmp_path / "frames")
    at_128, at_192 = track_iou(128, tmp_path / "frames", labels), track_iou(192, tmp_path / "frames", labels)
    assert len(at_192) == len(labels)
    assert min(at_128[1:]) > 0.5  # it tracks where it was trained
    assert min(at_192[1:]) > 0.5, at_192  # and at 192 px


@pytest.mark.parametrize("damage", ["missing", "corrupt", "no card"])
def test_a_broken_install_names_the_file_and_the_fix(broken_install: Path, damage: str) -> None:
    weights, card = packaged.packaged_paths(SPEC)
    if damage == "missing":
        weights.unlink()
    elif damage == "corrupt":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        card.unlink()
    with pytest.raises(CheckpointError) as excinfo:
        build_model(ModelSettings(size="micro"), 128)
    message = str(excinfo.value)
    assert str(card if damage == "no card" else weights) in message
    assert "pip install --force-reinstall sam2tool" in message


def test_a_broken_install_exits_1_with_one_line(broken_install: Path, tmp_path: Path) -> None:
    packaged.packaged_paths(SPEC)[0].write_bytes(b"not weights")
    make_frames(tmp_path / "frames", 2)
    result = runner.invoke(
        app, ["predict-video", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--model", "sam2.1_micro",
              "--point", "25,35", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "packaged SAM 2.1 micro weights" in result.output and "--force-reinstall" in result.output
    assert "Traceback" not in result.output


def test_a_checkpoint_of_another_architecture_gets_the_strict_load_message(tmp_path: Path) -> None:
    from sam2tool.models.checkpoints import save_official_checkpoint

    other = tmp_path / "tiny.pt"
    save_official_checkpoint(build_model(ModelSettings(size="tiny", checkpoint=None), 64).model, other)
    config = tmp_path / "micro.yaml"
    assert runner.invoke(app, ["init-config", str(config), "--preset", "micro"]).exit_code == 0
    settings = load_settings(config, [f"model.checkpoint={other}"])
    with pytest.raises(
        CheckpointError, match=r"does not fit SAM 2.1 micro: .*missing keys .*it looks like SAM 2.1 tiny"
    ):
        build_model(settings.model, 128)
