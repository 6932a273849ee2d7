"""Atomic file writes: the output appears whole or not at all, with ordinary permissions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temp_file_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temporary file in `path`'s folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def publish(temp: str, path: Path) -> None:
    """Give the finished temp file ordinary permissions (mkstemp and some writers make 0600), then rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


def atomic_write(path, write) -> Path:
    """Run `write(temp_name)` on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, temp = temp_file_beside(path)
    os.close(fd)
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        publish(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
