"""The one reader (and writer) of safetensors files: every model, VAE, wav2vec2, demixer, features and segment file
goes through it.

Nothing in a file is trusted. The header is checked against the file itself (entries well formed, dtypes known,
each tensor's bytes inside the file, no overlap) before any tensor is read, so a small file cannot announce a
huge tensor; the loaders (`mtv_core.checkpoints`) then compare a model built on the meta device (no memory) with
the header's names and shapes before they read a byte of weights. Every problem is a ModelFileError naming the file.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import ModelFileError
from .fileio import atomic_write

MAX_HEADER_BYTES = 100_000_000
MAX_DIMENSIONS = 8
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class TensorFile:
    path: Path
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.tensors.items()}

    def json_metadata(self, key: str, fix: str):
        """A JSON value stored in the metadata under `key`, or None when absent."""
        if key not in self.metadata:
            return None
        try:
            return json.loads(self.metadata[key])
        except ValueError as error:
            raise ModelFileError(f"{self.path}: its '{key}' metadata is not JSON ({error}); {fix}") from None

    def check_matches(self, expected: dict, fix: str) -> None:
        """The file holds exactly the tensors `expected` ({name: shape}) describes."""
        missing = sorted(set(expected) - set(self.tensors))
        unexpected = sorted(set(self.tensors) - set(expected))
        if missing or unexpected:
            raise ModelFileError(f"{self.path}: does not match its own config: missing {_few(missing)}, unexpected "
                                 f"{_few(unexpected)}; {fix}")
        for name, shape in expected.items():
            if tuple(shape) != self.tensors[name].shape:
                raise ModelFileError(f"{self.path}: tensor {name} has shape {self.tensors[name].shape}, its config says "
                                     f"{tuple(shape)}; {fix}")

    def load(self, names=None, device="cpu") -> dict:
        """The named tensors (all by default) as torch tensors."""
        try:
            with safe_open(str(self.path), framework="pt", device=str(device)) as handle:
                return {name: handle.get_tensor(name) for name in (self.tensors if names is None else names)}
        except (SafetensorError, OSError, RuntimeError, ValueError) as error:
            raise ModelFileError(f"{self.path}: unreadable ({error}); download or write it again") from None


def read_tensor_file(path, what: str = "file") -> TensorFile:
    """Read and check a safetensors header; `what` names the kind of file in the errors ("model file", ...)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; check the path")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{path}: not a safetensors file ({size} bytes); give a {what} in safetensors format")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(size - 8, MAX_HEADER_BYTES):
            raise ModelFileError(f"{path}: not a safetensors file (bad header length); give a {what} in safetensors format")
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, ValueError) as error:
            raise ModelFileError(f"{path}: not a safetensors file (header is not JSON: {error})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a safetensors file (the header is a {type(header).__name__}, not a mapping)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ModelFileError(f"{path}: its metadata is not a mapping of text to text; write the file again")
    tensors = {name: _entry(path, name, value) for name, value in header.items()}
    _check_layout(path, tensors, size - 8 - header_size)
    return TensorFile(path, tensors, metadata)


def _entry(path: Path, name, value) -> TensorEntry:
    problem = f"{path}: tensor {str(name)[:80]!r} is described wrongly in the header"
    if not isinstance(name, str) or not isinstance(value, dict):
        raise ModelFileError(f"{problem} (not a named mapping); the file is damaged")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise ModelFileError(f"{problem} (dtype {str(dtype)[:20]!r} is not one of {', '.join(DTYPE_BYTES)})")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(_natural(d) for d in shape)):
        raise ModelFileError(f"{problem} (shape {str(shape)[:60]} is not a list of at most {MAX_DIMENSIONS} sizes)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_natural(o) for o in offsets) and offsets[0] <= offsets[1]):
        raise ModelFileError(f"{problem} (data_offsets {str(offsets)[:60]} is not [start, end])")
    if (offsets[1] - offsets[0]) != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise ModelFileError(f"{problem} (its {offsets[1] - offsets[0]} bytes do not hold a {dtype} tensor of shape {shape})")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _natural(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _check_layout(path: Path, tensors: dict, data_bytes: int) -> None:
    end = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if entry.start < end:
            raise ModelFileError(f"{path}: tensor {name!r} overlaps another in the file; the file is damaged")
        end = max(end, entry.end)
    if end > data_bytes:
        raise ModelFileError(f"{path}: truncated: the header describes {end} bytes of tensors but the file holds "
                             f"{data_bytes}; download or convert it again")


def _few(keys: list[str]) -> str:
    return "none" if not keys else ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def write_tensor_file(path, tensors: dict, metadata: dict | None = None) -> Path:
    """Write `tensors` (and string `metadata`) to `path` atomically: a reader never sees half a file."""
    return atomic_write(path, lambda temp: save_file(tensors, temp, metadata=metadata))
