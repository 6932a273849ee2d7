"""Step checkpoints of a stage run: RUN/<stage>/checkpoints/step-00000200/ holds engine/ (accelerate's
save_state: model and optimizer as the engine shards them, every process's RNG), state.pt (the trainer's own state:
step, data position, learning-rate schedule, EMA, the run's settings), {model,ema}.safetensors (whole weights,
readable by the loaders) and manifest.json (every file's sha256, signed: see trust.py).

Every process writes its part into a hidden partial folder; rank 0 renames it into place and only then names it in
the `latest` file; a failure at any point (disk full) leaves the previous checkpoint and `latest` as they were.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from accelerate.utils import load as accelerate_load
from accelerate.utils.constants import RNG_STATE_NAME

from mtv_core.checkpoints import save_safetensors
from mtv_core.fileio import atomic_write

from .errors import CheckpointWriteError, TrainerError
from .trust import verify_folder, write_manifest

MODEL_FILE = "model.safetensors"
EMA_FILE = "model-ema.safetensors"
LORA_FILE = "lora.safetensors"
LORA_EMA_FILE = "lora-ema.safetensors"
STATE_FILE = "state.pt"
ENGINE_DIR = "engine"
LATEST = "latest"
STEP_NAME = re.compile(r"step-\d{8}")
STATE_FORMAT = 3  # state.pt (with the LR schedule) beside accelerate's engine state, signed


def save_outputs(folder: Path, outputs: dict) -> None:
    """{file name: (tensors, config, kind)}: whole models or LoRA adapters, each written atomically."""
    for name, (tensors, config, kind) in outputs.items():
        save_safetensors(folder / name, tensors, config, kind)


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
        name = pointer.read_text().strip()
        if not STEP_NAME.fullmatch(name):  # only a step folder beside it, never a path elsewhere
            raise TrainerError(f"{pointer}: names {name[:80]!r}, not a step folder (step-00000200); it was edited or "
                               "damaged: write the name of the checkpoint to resume into it, or start without --resume")
        folder = self.root / name
        return folder if (folder / STATE_FILE).is_file() else None

    def partial(self, step: int) -> Path:
        return self.root / f".{self.step_dir(step).name}.partial"

    def start(self, step: int) -> Path:
        """An empty partial folder for the step's checkpoint (rank 0, before every process writes into it)."""
        partial = self.partial(step)
        shutil.rmtree(partial, ignore_errors=True)
        self._guard(step, partial, lambda: partial.mkdir(parents=True))
        return partial

    def publish(self, step: int, outputs: dict, state: dict) -> Path:
        """Rank 0, once every process has written its part: the weight files and state.pt, then into place."""
        partial, final = self.partial(step), self.step_dir(step)

        def finish():
            save_outputs(partial, outputs)
            save_state(partial / STATE_FILE, state)
            write_manifest(partial)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            atomic_write(self.root / LATEST, lambda temp: Path(temp).write_text(final.name))
        self._guard(step, partial, finish)
        self._prune()
        return final

    def _guard(self, step: int, partial: Path, work) -> None:
        try:
            work()
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            previous = self.latest()
            raise CheckpointWriteError(
                f"could not save the step-{step} checkpoint under {str(self.root)!r} ({error.strerror or error}); "
                f"the previous checkpoint {str(previous) if previous else '(none)'} is intact. "
                "Free disk space (or lower --keep) and rerun with --resume"
            ) from error

    def load_state(self, trusted: bool = False) -> dict:
        """The trainer's state of the latest checkpoint, once the folder verifies (or the user trusts it)."""
        folder = self.latest()
        if folder is None:
            raise TrainerError(f"--resume: no checkpoint under {str(self.root)!r}; start without --resume")
        if not trusted:
            verify_folder(folder)
        try:
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as error:
            raise TrainerError(f"{folder / STATE_FILE}: unreadable training state ({error}); delete that folder and resume from an older one") from error
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or not (folder / ENGINE_DIR).is_dir():
            raise TrainerError(f"{folder} was written by an older trainer (no engine state); it cannot be resumed "
                               "exactly. Start the stage again without --resume (in another --out)")
        return state

    def _prune(self) -> None:
        folders = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for folder in folders[: -self.keep]:
            shutil.rmtree(folder, ignore_errors=True)


def load_engine_state(engine: Path, accelerator) -> None:
    """accelerate's load_state, with this process's RNG state required (accelerate only logs one it cannot read,
    and the resume would silently not be exact) and every failure named by the folder."""
    rng = engine / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    try:
        states = accelerate_load(rng)  # weights_only, as accelerate itself reads it
        if not {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(states):
            raise ValueError(f"holds {sorted(states)[:5]}")
    except Exception as error:  # noqa: BLE001 (whatever torch.load raises on a bad file)
        raise TrainerError(f"{rng}: this process's random state cannot be read ({_first_line(error)}), so the run "
                           "cannot resume exactly; resume from an earlier checkpoint or start again") from None
    try:
        accelerator.load_state(str(engine))
    except Exception as error:  # noqa: BLE001 (the engines raise their own errors on a bad file)
        raise TrainerError(f"{engine}: the engine state cannot be loaded ({_first_line(error)}); resume from an "
                           "earlier checkpoint, with the same launcher config and options") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"
