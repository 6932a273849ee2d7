"""Reading and writing model files safely: no arbitrary unpickling, atomic writes, clear errors."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..fileio import atomic_write

CONFIG_KEY = "config"
KIND_KEY = "mtv_kind"


def load_pickled_state_dict(path: str | Path) -> dict:
    """Load an official .pt/.th file with `weights_only=True`: tensors and plain containers only.

    Memory-mapped, so a 23 GB checkpoint is not read into RAM at once. A file whose pickle
    references anything else (code, custom classes) is refused rather than executed.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; pass the path of the official checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{path}: refused to unpickle it, because it holds more than tensors and plain containers "
            f"({str(error).splitlines()[0][:200]}); this tool never executes code from a checkpoint. "
            "Re-save it as a plain state_dict with the code that made it, or use the released official file."
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {error}") from error


def unwrap_state_dict(saved) -> dict:
    """DeepSpeed saves {"module": state_dict, ...}; Lightning/SAT VAEs {"state_dict": ...}."""
    for key in ("module", "state_dict", "model"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            return saved[key]
    return saved


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], config: dict | None = None, kind: str | None = None) -> Path:
    """Write tensors (and the config as JSON metadata) to a temporary file, then rename it into place."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {}
    if config is not None:
        metadata[CONFIG_KEY] = json.dumps(config)
    if kind is not None:
        metadata[KIND_KEY] = kind
    atomic_write(path, lambda temp: save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata))
    return path


def read_header(path: str | Path) -> tuple[dict, dict]:
    """(tensor entries, metadata) of a safetensors file, after checking it is whole."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; check the path (ComfyUI model folders: models/diffusion_models, models/vae)")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{path}: not a safetensors file ({size} bytes); convert official .pt files with `python -m mtv_core convert`")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(size - 8, 100_000_000):
            raise ModelFileError(f"{path}: not a safetensors file (bad header); convert official .pt files with `python -m mtv_core convert`")
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelFileError(f"{path}: not a safetensors file (header is not JSON: {error})") from error
    metadata = header.pop("__metadata__", {}) or {}
    data_end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    if 8 + header_size + data_end > size:
        raise ModelFileError(
            f"{path}: truncated: the header describes {8 + header_size + data_end} bytes but the file has {size}; "
            "download or convert it again"
        )
    return header, metadata


def read_config(path: str | Path) -> dict | None:
    _, metadata = read_header(path)
    return json.loads(metadata[CONFIG_KEY]) if CONFIG_KEY in metadata else None
