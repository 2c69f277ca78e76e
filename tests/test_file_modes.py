"""Every file and folder sam2tool writes gets the user's umask, as any new file does.

Shared cluster folders rely on it: a ``0600`` file (what safetensors creates) is unreadable to
the rest of a group. The umask here is ``0o002`` (group-writable), so a fixed mode shows.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sam2tool.atomic import atomic_path
from sam2tool.services.export import export_model
from sam2tool.services.train import train
from tests.conftest import RUN_SIZE, micro_run_settings, prepare_synthetic

UMASK = 0o002


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(UMASK)
    try:
        yield UMASK
    finally:
        os.umask(previous)


def wrong_modes(root: Path, mask: int) -> list[str]:
    """Files and folders below ``root`` whose mode is not the umask's default."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != expected:
            wrong.append(f"{path.relative_to(root)}: {oct(mode)}, expected {oct(expected)}")
    return wrong


def test_prepare_data_train_and_export_write_with_the_umask(tmp_path: Path, umask: int) -> None:
    data = prepare_synthetic(tmp_path / "data", videos=3, frames=5, size=RUN_SIZE)
    result = train(micro_run_settings(data, tmp_path / "runs", "trainer.max_steps=2"))
    export_model(result.last_checkpoint, tmp_path / "export", formats=("sam2", "safetensors"))
    assert (tmp_path / "export" / "model.safetensors").is_file()
    for folder in ("data", "runs", "export"):
        assert not wrong_modes(tmp_path / folder, umask), wrong_modes(tmp_path / folder, umask)


def test_a_file_a_library_creates_0600_is_renamed_into_place_with_the_umask(tmp_path: Path, umask: int) -> None:
    with atomic_path(tmp_path / "weights.bin") as tmp:
        tmp.write_bytes(b"weights")
        os.chmod(tmp, 0o600)
    assert stat.S_IMODE((tmp_path / "weights.bin").stat().st_mode) == 0o664
