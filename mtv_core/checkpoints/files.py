"""Reading and writing model files safely: no arbitrary unpickling, atomic writes, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import ModelFileError
from ..fileio import atomic_write
from ..tensorfile import read_tensor_file

CONFIG_KEY = "config"
KIND_KEY = "mtv_kind"


def load_pickled_state_dict(path: str | Path) -> dict:
    """Load an official .pt/.th file with `weights_only=True`: tensors and plain containers only.

    A zip-format file (every torch.save since 1.6) is memory-mapped, so a 23 GB checkpoint is not read into RAM
    at once; a legacy (pre-1.6) file cannot be mapped and is read whole. A file whose pickle references anything
    else (code, custom classes) is refused rather than executed.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; pass the path of the official checkpoint")
    with open(path, "rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{path}: refused to unpickle it, because it holds more than tensors and plain containers "
            f"({str(error).splitlines()[0][:200]}); this tool never executes code from a checkpoint. "
            "Re-save it as a plain state_dict with the code that made it, or use the released official file."
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        kind = "PyTorch checkpoint" if zipped else "legacy (pre-zip) PyTorch checkpoint"
        raise ModelFileError(f"{path}: not a readable {kind} (truncated or corrupt?): {str(error)[:300]}") from error


def unwrap_state_dict(saved) -> dict:
    """DeepSpeed saves {"module": state_dict, ...}; Lightning/SAT VAEs {"state_dict": ...}."""
    for key in ("module", "state_dict", "model"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            return saved[key]
    return saved


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], config: dict | None = None, kind: str | None = None) -> Path:
    """Write tensors (and the config as JSON metadata) to a temporary file, then rename it into place."""
    path = Path(path)
    metadata = {}
    if config is not None:
        metadata[CONFIG_KEY] = json.dumps(config)
    if kind is not None:
        metadata[KIND_KEY] = kind
    atomic_write(path, lambda temp: save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata))
    return path


def read_config(path: str | Path) -> dict | None:
    """The model config stored in a converted file's metadata (None if it has none)."""
    return read_tensor_file(path, "model file").json_metadata(CONFIG_KEY, "convert the model again with `python -m mtv_core convert`")
