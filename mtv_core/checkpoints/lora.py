"""MTV LoRA adapter files: written by `save_lora`, read and checked by `load_lora` (names, shapes and settings
before any tensor is read, finite values after). What an adapter does to a model is `mtv_core.lora`."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..lora import IDENTITY_TENSORS, MAX_RANK, LoraAdapter, base_identity, check_strength
from ..models import MTVTransformer3DModel
from ..tensorfile import read_tensor_file
from .files import CONFIG_KEY, KIND_KEY, save_safetensors
from .folders import build_on_meta
from .transformer import mtv_file_config

LORA_KIND = "mtv-lora"
LORA_FIX = "use a LoRA written by `python -m trainer --train lora` for MTV"
_KEY = re.compile(r"(?P<module>[\w.]+)\.lora_(?P<part>[AB])\.weight")


def save_lora(path, pairs: dict, rank: int, alpha: float, targets: str, base: dict) -> Path:
    """Write an adapter file: {module: (A, B)} with its settings and base identity in the metadata."""
    tensors = {}
    for module, (down, up) in pairs.items():
        tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"] = down, up
    return save_safetensors(path, tensors, adapter_settings(rank, alpha, targets, base), LORA_KIND)


def adapter_settings(rank: int, alpha: float, targets: str, base: dict) -> dict:
    """An adapter file's metadata (see `load_lora`)."""
    return {"rank": rank, "alpha": alpha, "targets": targets, "base": base}


def load_lora(path) -> LoraAdapter:
    """Read and check an MTV LoRA file (names, shapes and settings, before any tensor is read)."""
    tensors = read_tensor_file(path, "LoRA file")
    if tensors.metadata.get(KIND_KEY) != LORA_KIND:
        raise ModelFileError(f"{path}: not an MTV LoRA (kind {tensors.metadata.get(KIND_KEY)!r}, expected "
                             f"{LORA_KIND!r}); {LORA_FIX}")
    settings = tensors.json_metadata(CONFIG_KEY, LORA_FIX)
    if not isinstance(settings, dict):
        raise ModelFileError(f"{path}: its LoRA settings are missing; {LORA_FIX}")
    rank, alpha, base = settings.get("rank"), settings.get("alpha"), settings.get("base")
    if not (isinstance(rank, int) and 1 <= rank <= MAX_RANK and isinstance(alpha, (int, float)) and 0 < alpha <= 4 * MAX_RANK):
        raise ModelFileError(f"{path}: LoRA rank {rank!r} / alpha {alpha!r} out of range (rank 1..{MAX_RANK}); {LORA_FIX}")
    if not (isinstance(base, dict) and all(isinstance(base.get(k), str) for k in ("variant", "config", "weights"))):
        raise ModelFileError(f"{path}: the LoRA does not name its base model; {LORA_FIX}")
    modules = _check_pairs(path, tensors.shapes, rank)
    loaded = tensors.load()
    _check_finite(path, loaded)
    pairs = {module: (loaded[f"{module}.lora_A.weight"], loaded[f"{module}.lora_B.weight"]) for module in modules}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted(loaded):
        digest.update(name.encode() + loaded[name].float().numpy().tobytes())
    return LoraAdapter(Path(path), pairs, rank, float(alpha), base, digest.hexdigest()[:16])


def parse_lora_argument(text: str) -> tuple[LoraAdapter, float]:
    """FILE or FILE:STRENGTH, loaded and checked (the last colon splits, so a Windows drive letter stays in the path)."""
    path, _, strength = text.rpartition(":")
    try:
        value = float(strength)
    except ValueError:
        return load_lora(text), 1.0
    return load_lora(path), check_strength(value, text)


def file_identity(path) -> tuple[dict, MTVTransformer3DModel]:
    """`base_identity` of an MTV model file, and its model built on the meta device (no memory), reading only the
    few tensors it needs. The config is the built model's, as for a loaded one: a file's metadata may leave out
    settings at their defaults."""
    tensors = read_tensor_file(path, "model file")
    model, _ = build_on_meta(lambda: MTVTransformer3DModel(**mtv_file_config(tensors)))
    return base_identity(dict(model.config), tensors.load(IDENTITY_TENSORS)), model


def _check_finite(path, loaded: dict) -> None:
    """Refuse an adapter with NaN or infinite values (what a diverged training run writes): it would spread them into
    every output of the model."""
    for name in sorted(loaded):
        bad = int((~torch.isfinite(loaded[name])).sum())
        if bad:
            raise ModelFileError(f"{path}: tensor {name} holds {bad} NaN or infinite value(s); this adapter is broken "
                                 "(e.g. its training diverged): use an earlier checkpoint or train it again")


def _check_pairs(path, shapes: dict, rank: int) -> list[str]:
    parts = {}
    for name, shape in shapes.items():
        match = _KEY.fullmatch(name)
        if not match or len(shape) != 2:
            raise ModelFileError(f"{path}: tensor {name[:80]!r} {shape} is not a LoRA A or B matrix; {LORA_FIX}")
        parts.setdefault(match["module"], {})[match["part"]] = shape
    if not parts:
        raise ModelFileError(f"{path}: holds no LoRA weights; {LORA_FIX}")
    for module, pair in parts.items():
        if set(pair) != {"A", "B"} or pair["A"][0] != rank or pair["B"][1] != rank:
            raise ModelFileError(f"{path}: {module}'s LoRA matrices {pair} do not pair at rank {rank}; {LORA_FIX}")
    return sorted(parts)
