"""Reading and writing model files safely: no arbitrary unpickling, atomic writes, clear errors."""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
    path = _existing(path)
    zipped = _is_zip(path)
    return _torch_load(path, zipped, map_location="cpu", mmap=zipped)


BLOCK_BYTES = 64 << 20


class LazyCheckpoint:
    """An official .pt read with `weights_only=True` whose tensors are read from the file one at a time, when asked.

    A zip-format file is unpickled onto the meta device (names, shapes, dtypes and each storage's place in the file,
    no data); `load` and `blocks` then read just the bytes a tensor (or a block of its rows) covers, so converting a
    23 GB checkpoint holds a block at a time in memory, neither a copy nor mapped pages of the whole file. A legacy (pre-zip) file is read whole.
    """

    def __init__(self, path: str | Path):
        self.path = _existing(path)
        self.zipped = _is_zip(self.path)
        self.saved = _torch_load(self.path, self.zipped, map_location="meta" if self.zipped else "cpu", mmap=False)

    def load(self, tensor: torch.Tensor) -> torch.Tensor:
        """The data of one of this checkpoint's tensors (as found in `saved`), or of a view of one."""
        if not tensor.is_meta:
            return tensor
        if tensor.numel() == 0:
            return torch.empty(tensor.shape, dtype=tensor.dtype)
        item = tensor.element_size()
        span = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
        start = tensor.untyped_storage()._checkpoint_offset + tensor.storage_offset() * item
        data = bytearray(span * item)
        with open(self.path, "rb") as handle:
            handle.seek(start)
            if handle.readinto(data) != len(data):
                raise ModelFileError(f"{self.path}: truncated: a tensor's bytes end past the file's end; download it again")
        return torch.frombuffer(data, dtype=tensor.dtype).as_strided(tensor.shape, tensor.stride())

    def in_file(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is (a view of) one of the file's tensors, rather than something computed from them."""
        return tensor.is_meta and getattr(tensor.untyped_storage(), "_checkpoint_offset", None) is not None

    def blocks(self, tensor: torch.Tensor) -> Iterator[torch.Tensor]:
        """A contiguous tensor of the file in blocks of whole rows of about BLOCK_BYTES (at least one row), so even
        a 2.4 GB tensor passes through memory a little at a time; anything else whole."""
        if not self.in_file(tensor) or tensor.dim() == 0 or not tensor.is_contiguous():
            yield self.load(tensor)
            return
        rows = max(1, BLOCK_BYTES // max(1, tensor[0].numel() * tensor.element_size()))
        for start in range(0, tensor.shape[0], rows):
            yield self.load(tensor[start:start + rows])


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file; pass the path of the official checkpoint")
    return path


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _torch_load(path: Path, zipped: bool, map_location: str, mmap: bool):
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
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
    metadata = _metadata(config, kind)
    atomic_write(path, lambda temp: save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata))
    return path


SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64", torch.int32: "I32",
                      torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def stream_safetensors(path: str | Path, planned: list[PlannedTensor], parts: Iterable[Iterable[torch.Tensor]],
                       config: dict | None = None, kind: str | None = None, progress=None) -> Path:
    """Write a safetensors file a block at a time: the header, computed from the planned names, dtypes and shapes,
    then each planned tensor's bytes from its part (blocks of rows, in order). Only the block being written is in
    memory. `progress(bytes_written, total_bytes)` after each block. Atomic, like `save_safetensors`."""
    header = _stream_header(planned, _metadata(config, kind))
    total = sum(entry.nbytes for entry in planned)

    def write(temp):
        done = 0
        with open(temp, "wb") as handle:
            handle.write(struct.pack("<Q", len(header)) + header)
            for entry, blocks in zip(planned, parts, strict=True):
                written = 0
                for block in blocks:
                    if block.dtype != entry.dtype:
                        raise ValueError(f"{entry.name}: a block made as {block.dtype}, planned as {entry.dtype}")
                    handle.write(block.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
                    written += block.nbytes
                    if progress is not None:
                        progress(done + written, total)
                if written != entry.nbytes:
                    raise ValueError(f"{entry.name}: {written} bytes made, {entry.nbytes} planned")
                done += written

    return atomic_write(Path(path), write)


def _stream_header(planned: list[PlannedTensor], metadata: dict) -> bytes:
    header, offset = {}, 0
    for entry in planned:
        header[entry.name] = {"dtype": SAFETENSORS_DTYPES[entry.dtype], "shape": list(entry.shape),
                              "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + b" " * (-len(encoded) % 8)  # tensor data starts 8-byte aligned, as safetensors writes it


def _metadata(config: dict | None, kind: str | None) -> dict:
    metadata = {}
    if config is not None:
        metadata[CONFIG_KEY] = json.dumps(config)
    if kind is not None:
        metadata[KIND_KEY] = kind
    return metadata


def read_config(path: str | Path) -> dict | None:
    """The model config stored in a converted file's metadata (None if it has none)."""
    return read_tensor_file(path, "model file").json_metadata(CONFIG_KEY, "convert the model again with `python -m mtv_core convert`")
