"""Output files the trainer's commands write: an existing file is kept unless the user asks to replace it."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TrainerError

OVERWRITE_HELP = "replace an existing --out file (atomically: the old file stays whole until the new one is complete)"


def refuse_existing(path, overwrite: bool, option: str = "--out") -> Path:
    """`path` as a Path, checked before any work: never a folder, and an existing file only with `overwrite`. The
    writers replace a file atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    if path.is_dir():
        raise TrainerError(f"{option} {str(path)!r} is a folder; {option} names the file to write, e.g. {path / 'out.safetensors'}")
    if os.path.lexists(path) and not overwrite:
        raise TrainerError(f"{path} exists; choose another {option} or pass --overwrite")
    return path
