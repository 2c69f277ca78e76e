"""Write files and folders so that readers never see them half-written.

Everything is first written to a temporary sibling (same folder, so the final ``os.replace``
is atomic on POSIX file systems), flushed to disk, then renamed over the destination. On any
exception the temporary file or folder is removed and the destination is left untouched.

What is renamed into place gets the modes of any new file or folder under the user's umask
(``0o666`` / ``0o777`` minus the umask), whatever the library that wrote it chose: safetensors,
for one, creates its files ``0600``, which shared cluster folders cannot read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sam2tool.errors import UsageError


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place on success.

    The caller writes the temporary file (with any library). When the block exits normally,
    the file is fsynced and renamed onto ``destination``; when it raises, the file is deleted.

    Args:
        destination: Final path of the file. Its parent folder is created if needed.

    Yields:
        The temporary path to write to.

    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    # O_EXCL reserves the name; mode 0o666 lets the umask decide permissions as for any new file.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _give_default_mode(tmp)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(destination: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``destination`` atomically."""
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_replaceable(output: Path, force: bool, *, marker: str, writer: str) -> None:
    """Refuse to replace ``output`` unless ``force`` is given and it is a folder ``writer`` wrote.

    Args:
        output: The folder a command is about to write.
        force: The user asked to replace an existing folder.
        marker: A file that every folder ``writer`` writes contains (e.g. ``manifest.json``).
        writer: The command, for the message (``prepare-data``).

    Raises:
        UsageError: ``output`` exists and may not be replaced; the message says what to do.

    """
    if not output.exists() and not output.is_symlink():
        return
    if not force:
        raise UsageError(f"{output} already exists; pass --force to replace it")
    if output.is_symlink() or not output.is_dir():
        raise UsageError(f"{output} is not a folder; remove it or choose another OUTPUT")
    resolved = output.resolve()
    if resolved == Path.cwd().resolve() or resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise UsageError(f"{output} is the current, home or root folder; choose another OUTPUT")
    if any(output.iterdir()) and not (output / marker).is_file():
        raise UsageError(
            f"--force only replaces a folder written by {writer}, and {output} has no {marker}; "
            "remove it yourself or choose another OUTPUT"
        )


@contextlib.contextmanager
def atomic_folder(output: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``output``; rename it into place when the block succeeds.

    An existing ``output`` is replaced only once the new folder is complete (check it with
    :func:`check_replaceable` first). Temporary folders left by killed processes are removed.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(output)
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        _give_default_modes(staging)
        _replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_default_mode(path: Path, mask: int | None = None) -> None:
    """Give ``path`` the mode a new file (or folder) gets under the umask."""
    mask = _umask() if mask is None else mask
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _give_default_modes(folder: Path) -> None:
    """:func:`_give_default_mode` for ``folder`` and everything in it."""
    mask = _umask()
    _give_default_mode(folder, mask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            _give_default_mode(path, mask)


def _remove_stale_staging(output: Path) -> None:
    """Remove temporary folders of earlier runs that were killed (their process is gone)."""
    for stale in output.parent.glob(f".{output.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace(staging: Path, output: Path) -> None:
    """Rename ``staging`` to ``output``, replacing an existing ``output`` only once staging is complete."""
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(output)
