"""Write files so that readers never see them half-written.

Everything is first written to a temporary sibling (same folder, so the final ``os.replace``
is atomic on POSIX file systems), flushed to disk, then renamed over the destination. On any
exception the temporary file is removed and the destination is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


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
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL reserves the name; mode 0o666 lets the umask decide permissions as for any new file.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(destination: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``destination`` atomically."""
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")
