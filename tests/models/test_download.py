"""Official checkpoints: downloaded once from a (local) server, atomically, with clear failures."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from sam2tool.config.schema import ModelSettings
from sam2tool.errors import DownloadError
from sam2tool.models.build import build_model
from sam2tool.models.download import default_cache_dir, download_file, resolve_checkpoint
from tests.conftest import FileServer


def official_tiny_bytes() -> bytes:
    torch.manual_seed(3)
    model = build_model(ModelSettings(size="tiny", checkpoint=None), 64).model
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict()}, buffer)
    return buffer.getvalue()


def test_default_cache_dir_follows_xdg(tmp_path: Path) -> None:
    assert default_cache_dir() == tmp_path / "xdg-cache" / "sam2tool"


def test_official_checkpoint_is_downloaded_once_and_loads(file_server: FileServer, tmp_path: Path) -> None:
    body = official_tiny_bytes()
    file_server.files["/mirror/sam2.1_hiera_tiny.pt"] = body
    settings = ModelSettings(size="tiny", checkpoint="official", download_url=f"{file_server.url}/mirror")
    path = resolve_checkpoint(settings, progress=False)
    assert path == tmp_path / "xdg-cache" / "sam2tool" / "sam2.1_hiera_tiny.pt"
    assert path.read_bytes() == body
    assert list(path.parent.iterdir()) == [path]
    # Second use: from the cache, no request.
    built = build_model(settings, 64, progress=False)
    assert built.checkpoint == path
    assert file_server.requests == ["/mirror/sam2.1_hiera_tiny.pt"]


def test_official_name_and_custom_cache_dir(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/sam2_hiera_small.pt"] = b"PK\x03\x04" + b"x" * 10
    settings = ModelSettings(
        size="small",
        version="sam2",
        checkpoint="sam2_hiera_small",
        download_url=file_server.url,
        cache_dir=tmp_path / "c",
    )
    assert resolve_checkpoint(settings, progress=False) == tmp_path / "c" / "sam2_hiera_small.pt"


def test_local_file_wins_over_an_official_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("sam2.1_hiera_tiny.pt").write_bytes(b"mine")
    settings = ModelSettings(size="tiny", checkpoint="sam2.1_hiera_tiny.pt", download_url="http://127.0.0.1:9")
    assert resolve_checkpoint(settings, progress=False) == Path("sam2.1_hiera_tiny.pt")


def test_interrupted_download_leaves_no_file(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/x.pt"] = b"0123456789" * 1000
    file_server.truncate.add("/x.pt")
    destination = tmp_path / "cache" / "x.pt"
    with pytest.raises(DownloadError, match=r"stopped after 5000 of 10000 bytes; run the command again"):
        download_file(f"{file_server.url}/x.pt", destination, progress=False)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_http_error_names_url_and_status(file_server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(
        DownloadError, match=r"cannot download http://127\.0\.0\.1:\d+/missing.pt: the server answered HTTP 404"
    ):
        download_file(f"{file_server.url}/missing.pt", tmp_path / "m.pt", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ModelSettings(size="tiny", download_url=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "c")
    with pytest.raises(DownloadError) as excinfo:
        resolve_checkpoint(settings, progress=False)
    message = str(excinfo.value)
    assert f"cannot download http://127.0.0.1:{port}/sam2.1_hiera_tiny.pt" in message
    assert "if this machine is offline" in message
    assert f"copy it to {tmp_path / 'c' / 'sam2.1_hiera_tiny.pt'}" in message
    assert not (tmp_path / "c" / "sam2.1_hiera_tiny.pt").exists()


class RecordingProgress:
    """Stands in for rich's Progress and records what the download reported."""

    instances: ClassVar[list[RecordingProgress]] = []

    def __init__(self, *columns: object, disable: bool, transient: bool) -> None:
        self.disable, self.tasks, self.advanced = disable, [], 0
        RecordingProgress.instances.append(self)

    def __enter__(self) -> RecordingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: int | None) -> int:
        self.tasks.append((description, total))
        return 0

    def update(self, task: int, advance: int) -> None:
        self.advanced += advance


def test_progress_bar_reports_every_byte(
    file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sam2tool.models.download as download

    monkeypatch.setattr(download, "Progress", RecordingProgress)
    body = b"PK\x03\x04" + b"abc" * 1_000_000
    file_server.files["/p.pt"] = body
    download_file(f"{file_server.url}/p.pt", tmp_path / "p.pt", progress=True)
    (bar,) = RecordingProgress.instances
    assert not bar.disable
    assert bar.tasks == [("Downloading p.pt", len(body))]
    assert bar.advanced == len(body)
    assert (tmp_path / "p.pt").read_bytes() == body


def test_an_html_page_is_not_cached_as_a_checkpoint(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/sam2.1_hiera_tiny.pt"] = b"<html><body>Please sign in</body></html>"
    settings = ModelSettings(size="tiny", download_url=file_server.url, cache_dir=tmp_path / "c")
    with pytest.raises(DownloadError, match=r"did not return a PyTorch checkpoint \(the answer starts with b'<htm'\)"):
        resolve_checkpoint(settings, progress=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_cache_dir_that_is_a_file(file_server: FileServer, tmp_path: Path) -> None:
    (tmp_path / "c").write_text("not a folder")
    file_server.files["/sam2.1_hiera_tiny.pt"] = b"PK\x03\x04"
    settings = ModelSettings(size="tiny", download_url=file_server.url, cache_dir=tmp_path / "c")
    with pytest.raises(DownloadError, match=r"set model\.cache_dir to a writable folder"):
        resolve_checkpoint(settings, progress=False)
