"""Find the checkpoint file that ``model.checkpoint`` names, downloading official ones once.

The micro base ships inside the package (:mod:`sam2tool.models.packaged`) and is never downloaded.
Official checkpoints are cached in ``model.cache_dir`` (default ``$XDG_CACHE_HOME/sam2tool`` or
``~/.cache/sam2tool``). A download streams into a temporary sibling file with a progress bar and
is renamed into place only when complete: an interrupted download never leaves a file that looks
finished.
"""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from sam2tool.atomic import atomic_path
from sam2tool.config.registry import ModelSpec, get_spec, official_checkpoint_spec, official_url
from sam2tool.config.schema import ModelSettings
from sam2tool.errors import CheckpointError, DownloadError
from sam2tool.models.packaged import packaged_checkpoint

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes zip archives; Meta's checkpoints are such files


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sam2tool``, or ``~/.cache/sam2tool``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sam2tool"


def official_spec_for(settings: ModelSettings) -> ModelSpec | None:
    """The registry row whose official checkpoint ``model.checkpoint`` names, if it names one."""
    value = settings.checkpoint
    if value is None:
        return None
    if value == "official":
        return get_spec(settings.version, settings.size)
    if Path(value).expanduser().is_file():
        return None  # a local file wins over an official name spelled the same
    return official_checkpoint_spec(value)


def cached_checkpoint_path(settings: ModelSettings, spec: ModelSpec) -> Path:
    """Where the official checkpoint of ``spec`` is (or will be) cached."""
    assert spec.checkpoint_filename is not None
    cache = settings.cache_dir.expanduser() if settings.cache_dir is not None else default_cache_dir()
    return cache / spec.checkpoint_filename


def checkpoint_location(settings: ModelSettings) -> Path | None:
    """The file ``model.checkpoint`` names, without downloading anything; None means random weights.

    That is the packaged base (checked against its model card), the file in the cache where an
    official checkpoint is or will be downloaded, or the user's path, which may not exist.

    Raises:
        CheckpointError: A broken packaged base.

    """
    if settings.checkpoint is None:
        return None
    spec = official_spec_for(settings)
    if spec is not None and spec.packaged:
        return packaged_checkpoint(spec)
    if spec is not None:
        return cached_checkpoint_path(settings, spec)
    return Path(settings.checkpoint).expanduser()


def resolve_checkpoint(settings: ModelSettings, *, progress: bool = True) -> Path | None:
    """Return the checkpoint file for ``model.checkpoint``; None means random weights.

    Official names are downloaded into the cache on first use; the packaged base is read from the
    package.

    Raises:
        CheckpointError: A path that does not exist, or a broken packaged base.
        DownloadError: An official checkpoint could not be downloaded.

    """
    path = checkpoint_location(settings)
    if path is None or path.is_file():
        return path
    spec = official_spec_for(settings)
    if spec is None:
        raise CheckpointError(f"model.checkpoint: {missing_checkpoint_message(path)}")
    url = official_url(spec, settings.download_url)
    log.info("Downloading %s checkpoint from %s to %s", spec.display_name, url, path)
    download_file(url, path, progress=progress)
    return path


def missing_checkpoint_message(path: Path) -> str:
    """What to say when ``model.checkpoint`` names a file that is not there."""
    what = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
    return (
        f"{path} {what}; give the path of a .pt/.ckpt/.safetensors file, an official name such as "
        "sam2.1_hiera_tiny, 'official', or null for random weights"
    )


def download_file(url: str, destination: Path, *, progress: bool = True, timeout: float = 60.0) -> None:
    """Download ``url`` to ``destination`` atomically, with a progress bar.

    Raises:
        DownloadError: The server cannot be reached, answers with an HTTP error, or the
            transfer stops early. ``destination`` is then left untouched.

    """
    hint = (
        f"if this machine is offline, download {url} elsewhere and copy it to {destination}, "
        "or set model.checkpoint to the file's path (model.download_url selects a mirror)"
    )
    try:
        with atomic_path(destination) as tmp, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            written = _copy_with_progress(response, tmp, total, destination.name, progress)
            if total is not None and written != total:
                raise DownloadError(
                    f"download of {url} stopped after {written} of {total} bytes; run the command again to retry"
                )
            with open(tmp, "rb") as fh:
                head = fh.read(4)
            if head != _ZIP_MAGIC:
                raise DownloadError(
                    f"{url} did not return a PyTorch checkpoint (the answer starts with {head!r}); "
                    "check model.download_url, or download the file yourself"
                )
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"cannot download {url}: the server answered HTTP {exc.code} {exc.reason}; {hint}"
        ) from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url} ({reason}); {hint}") from None
    except http.client.IncompleteRead as exc:
        raise DownloadError(
            f"download of {url} stopped after {len(exc.partial)} bytes; run the command again to retry"
        ) from None
    except ValueError as exc:  # malformed URL
        raise DownloadError(f"cannot download {url}: {exc}; check model.download_url") from None
    except OSError as exc:  # the cache folder: not writable, a file in the way, disk full
        raise DownloadError(
            f"cannot write {destination}: {exc.strerror or exc}; set model.cache_dir to a writable folder"
        ) from None


def _copy_with_progress(
    response: http.client.HTTPResponse, target: Path, total: int | None, label: str, show: bool
) -> int:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    written = 0
    with Progress(*columns, disable=not show, transient=True) as bar, open(target, "wb") as fh:
        task = bar.add_task(f"Downloading {label}", total=total)
        while chunk := response.read(_CHUNK):
            fh.write(chunk)
            written += len(chunk)
            bar.update(task, advance=len(chunk))
        fh.flush()
    return written
