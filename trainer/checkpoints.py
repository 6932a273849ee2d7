"""Step checkpoints of a stage run: RUN/<stage>/checkpoints/step-00000200/{model,ema}.safetensors + state.pt.

A checkpoint is written into a hidden partial folder, renamed into place, and only then named in the
`latest` file; a failure at any point (disk full) leaves the previous checkpoint and `latest` as they were.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from mtv_core.checkpoints import save_safetensors
from mtv_core.checkpoints.loading import MTV_KIND
from mtv_core.fileio import atomic_write

from .errors import CheckpointWriteError, TrainerError

MODEL_FILE = "model.safetensors"
EMA_FILE = "model-ema.safetensors"
STATE_FILE = "state.pt"
LATEST = "latest"


def save_model_files(folder: Path, weights: dict, config: dict, ema_weights: dict | None) -> None:
    save_safetensors(folder / MODEL_FILE, weights, config, MTV_KIND)
    if ema_weights is not None:
        save_safetensors(folder / EMA_FILE, ema_weights, config, MTV_KIND)


def save_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda temp: torch.save(state, temp))


class CheckpointFolder:
    def __init__(self, stage_dir: Path, keep: int):
        if keep < 1:
            raise TrainerError(f"--keep {keep} would delete every checkpoint; keep at least 1")
        self.root = Path(stage_dir) / "checkpoints"
        self.keep = keep

    def step_dir(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def latest(self) -> Path | None:
        pointer = self.root / LATEST
        if not pointer.is_file():
            return None
        folder = self.root / pointer.read_text().strip()
        return folder if (folder / STATE_FILE).is_file() else None

    def save(self, step: int, weights: dict, config: dict, ema_weights: dict | None, state: dict) -> Path:
        final = self.step_dir(step)
        partial = self.root / f".{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.mkdir(parents=True)
            save_model_files(partial, weights, config, ema_weights)
            save_state(partial / STATE_FILE, state)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            atomic_write(self.root / LATEST, lambda temp: Path(temp).write_text(final.name))
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            previous = self.latest()
            raise CheckpointWriteError(
                f"could not save the step-{step} checkpoint under {str(self.root)!r} ({error.strerror or error}); "
                f"the previous checkpoint {str(previous) if previous else '(none)'} is intact. "
                "Free disk space (or lower --keep) and rerun with --resume"
            ) from error
        self._prune()
        return final

    def load_state(self) -> dict:
        folder = self.latest()
        if folder is None:
            raise TrainerError(f"--resume: no checkpoint under {str(self.root)!r}; start without --resume")
        try:
            return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as error:
            raise TrainerError(f"{folder / STATE_FILE}: unreadable training state ({error}); delete that folder and resume from an older one") from error

    def _prune(self) -> None:
        folders = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for folder in folders[: -self.keep]:
            shutil.rmtree(folder, ignore_errors=True)


def rng_state() -> dict:
    """Python, numpy and torch RNG states as plain tensors/containers (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": list(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
