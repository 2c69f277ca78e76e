"""Checkpoint files: round trips, the formats we read, and the files we refuse."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from sam2tool.config.registry import get_spec
from sam2tool.config.schema import ModelSettings
from sam2tool.errors import CheckpointError
from sam2tool.models.build import build_model, model_overrides
from sam2tool.models.checkpoints import describe_state_dict, read_state_dict, save_official_checkpoint
from tests.conftest import old_micro
from tests.sam2_probe import two_frame_outputs

SIZE = 64


@pytest.fixture
def trained(micro_settings: ModelSettings, tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    """A micro model with non-default weights, saved in the official format."""
    torch.manual_seed(1)
    model = build_model(micro_settings, SIZE).model
    path = tmp_path / "ckpt" / "micro.pt"
    save_official_checkpoint(model, path)
    return model, path


def assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for x, y in zip(two_frame_outputs(a, SIZE), two_frame_outputs(b, SIZE), strict=True):
        assert torch.equal(x, y)


def test_official_format_round_trip_gives_identical_outputs(trained: tuple[torch.nn.Module, Path]) -> None:
    model, path = trained
    assert set(torch.load(path, weights_only=True)) == {"model"}
    assert [p.name for p in path.parent.iterdir()] == ["micro.pt"]
    torch.manual_seed(2)  # different random init: only the checkpoint can make them equal
    loaded = build_model(ModelSettings(size="micro", checkpoint=str(path)), SIZE)
    assert loaded.checkpoint == path
    assert_same_outputs(model, loaded.model)


def test_official_sam2_builder_loads_our_checkpoint(trained: tuple[torch.nn.Module, Path]) -> None:
    from sam2.build_sam import build_sam2

    model, path = trained
    spec = get_spec("sam2.1", "micro")
    theirs = build_sam2(
        spec.config_name,
        str(path),
        device="cpu",
        hydra_overrides_extra=model_overrides(spec, SIZE),
        apply_postprocessing=False,
    )
    assert_same_outputs(model, theirs)


def test_lightning_and_bare_state_dict_formats(trained: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    model, _ = trained
    state = model.state_dict()
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3, "global_step": 10}, lightning)
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    for path in (lightning, bare):
        loaded = read_state_dict(path)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


class Exploit:
    """Unpickling this runs code: it would create the file named in ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "pwned"))


def test_pickle_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refused to load .*evil.pt: it holds Python objects other than tensors"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_checkpoint_that_runs_a_command_is_refused_as_more_than_weights(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.zeros(1)}, "payload": Command("touch " + str(tmp_path / "marker.txt"))}
    if protocol == 2:
        torch.save(payload, path)
    else:  # a plain pickle, not written by torch.save
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert message.startswith(f"refused to load {path}: it holds Python objects other than tensors")
    assert "more than weights" in message and "sam2tool loads only weights" in message
    assert "weights_only" not in message and "corrupt" not in message
    assert not (tmp_path / "marker.txt").exists()


class Command:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (self.command,))


def test_plain_pickle_with_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Exploit(marker), protocol=2))
    with pytest.raises(CheckpointError, match="refused to load"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"this is a text file\n", "not a readable PyTorch checkpoint"),
        (
            b"<!DOCTYPE html><html><body>Sign in</body></html>",
            "it is an HTML/XML page \\(a failed download\\?\\); delete it",
        ),
        (b'{"model": "x"}', "it is a JSON/text file"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "not a readable PyTorch checkpoint"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(path)


def test_truncated_checkpoint(trained: tuple[torch.nn.Module, Path]) -> None:
    _, path = trained
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"micro.pt is not a readable PyTorch checkpoint; it may be truncated"):
        read_state_dict(path)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        read_state_dict(tmp_path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2, 3], "not a SAM 2 checkpoint"),
        ({"optimizer": {"lr": 1}}, "not a SAM 2 checkpoint"),
        ({"state_dict": {"other.w": torch.zeros(1)}}, "Lightning checkpoint without SAM 2 weights"),
        ({"model": {"w": 3}}, "entry 'w' is not a tensor"),
    ],
)
def test_files_that_hold_something_else(tmp_path: Path, obj: object, message: str) -> None:
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(path)


def load_error(model: torch.nn.Module, path: Path, settings: ModelSettings) -> str:
    """Save ``model`` to ``path`` and return the error of loading it as ``settings`` describe."""
    save_official_checkpoint(model, path)
    with pytest.raises(CheckpointError) as excinfo:
        build_model(settings.model_copy(update={"checkpoint": str(path)}), 64)
    return str(excinfo.value)


def test_checkpoint_for_another_size_names_the_size(tmp_path: Path) -> None:
    tiny = build_model(ModelSettings(size="tiny", checkpoint=None), 64).model
    path = tmp_path / "tiny.pt"
    message = load_error(tiny, path, ModelSettings(size="small"))
    assert f"checkpoint {path} does not fit SAM 2.1 small" in message
    assert "missing keys (image_encoder.trunk.blocks.12." in message
    assert "it looks like SAM 2.1 tiny; set model.size and model.version to match" in message


def test_a_micro_checkpoint_of_sam2tool_0_1_says_to_fine_tune_again(tmp_path: Path) -> None:
    path = tmp_path / "old-micro.ckpt"
    message = load_error(old_micro(64), path, ModelSettings(size="micro"))
    assert f"checkpoint {path} does not fit SAM 2.1 micro" in message
    assert "it is a micro model of sam2tool 0.1" in message
    assert "fine-tune again from the packaged base (model.checkpoint: official)" in message


def test_checkpoint_for_another_version(tmp_path: Path) -> None:
    v2 = build_model(ModelSettings(size="micro", version="sam2", checkpoint=None), 64).model
    message = load_error(v2, tmp_path / "v2.pt", ModelSettings(size="micro", version="sam2.1"))
    assert "it looks like SAM 2 micro" in message


def test_describe_state_dict(trained: tuple[torch.nn.Module, Path]) -> None:
    model, _ = trained
    assert describe_state_dict(model.state_dict()) == "SAM 2.1 micro"
    assert describe_state_dict({"w": torch.zeros(1)}) is None


def test_failed_save_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, micro_settings: ModelSettings
) -> None:
    model = build_model(micro_settings, 64).model

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_official_checkpoint(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
