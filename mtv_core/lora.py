"""LoRA adapter files for MTV models: reading and checking them, applying them while a model runs, merging them.

A file holds, for each adapted Linear, `<module>.lora_A.weight` (rank, in) and `<module>.lora_B.weight` (out, rank);
its metadata says the rank, alpha and targets and names the base model it was trained on (variant, a digest of the
config and a digest of weights LoRA training never changes), so a LoRA is refused on another base. The output of an
adapted Linear becomes W x + strength * (alpha / rank) * B A x.

While a model runs, adapters act through forward hooks on the adapted Linears: the loaded model's weights are never
changed, so one model serves several graphs with different LoRAs, strengths stack, and fp8 weights or block swap
work as without them.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints.files import CONFIG_KEY, KIND_KEY, save_safetensors
from .checkpoints.loading import mtv_file_config
from .errors import ModelFileError
from .models import MTVTransformer3DModel
from .tensorfile import build_on_meta, read_tensor_file

LORA_KIND = "mtv-lora"
MAX_RANK = 1024
MAX_STRENGTH = 4.0
# Tensors outside the transformer blocks that LoRA training never changes: they identify the base model.
IDENTITY_TENSORS = ("patch_embed.proj.weight", "proj_out.weight", "time_embedding.linear_1.weight")
_KEY = re.compile(r"(?P<module>[\w.]+)\.lora_(?P<part>[AB])\.weight")


@dataclass(frozen=True)
class LoraAdapter:
    """One adapter file's weights: module name -> (A (rank, in), B (out, rank)), and what it was trained on."""

    path: Path
    pairs: dict
    rank: int
    alpha: float
    base: dict  # {"variant", "config", "weights"}: see `base_identity`
    digest: str  # of the file's tensors and settings: names this adapter in render fingerprints

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def base_identity(config: dict, weights: dict) -> dict:
    """What identifies a base model: its variant, its config and the tensors in IDENTITY_TENSORS (as bf16, so a
    float32 and a bfloat16 copy of one model agree)."""
    settings = {key: value for key, value in sorted(config.items()) if not key.startswith("_")}
    digest = hashlib.sha256()
    for name in IDENTITY_TENSORS:
        digest.update(weights[name].detach().to("cpu", torch.bfloat16).contiguous().view(torch.uint8).numpy().tobytes())
    return {"variant": settings.get("variant", "single"),
            "config": hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16],
            "weights": digest.hexdigest()[:16]}


def model_identity(model) -> dict:
    state = dict(model.named_parameters())
    return base_identity(dict(model.config), {name: state[name] for name in IDENTITY_TENSORS})


def file_identity(path) -> tuple[dict, MTVTransformer3DModel]:
    """`base_identity` of an MTV model file, and its model built on the meta device (no memory), reading only the
    few tensors it needs. The config is the built model's, as for a loaded one: a file's metadata may leave out
    settings at their defaults."""
    tensors = read_tensor_file(path, "model file")
    model, _ = build_on_meta(lambda: MTVTransformer3DModel(**mtv_file_config(tensors)))
    return base_identity(dict(model.config), tensors.load(IDENTITY_TENSORS)), model


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
    fix = "use a LoRA written by `python -m trainer --train lora` for MTV"
    if tensors.metadata.get(KIND_KEY) != LORA_KIND:
        raise ModelFileError(f"{path}: not an MTV LoRA (kind {tensors.metadata.get(KIND_KEY)!r}, expected {LORA_KIND!r}); {fix}")
    settings = tensors.json_metadata(CONFIG_KEY, fix)
    if not isinstance(settings, dict):
        raise ModelFileError(f"{path}: its LoRA settings are missing; {fix}")
    rank, alpha, base = settings.get("rank"), settings.get("alpha"), settings.get("base")
    if not (isinstance(rank, int) and 1 <= rank <= MAX_RANK and isinstance(alpha, (int, float)) and 0 < alpha <= 4 * MAX_RANK):
        raise ModelFileError(f"{path}: LoRA rank {rank!r} / alpha {alpha!r} out of range (rank 1..{MAX_RANK}); {fix}")
    if not (isinstance(base, dict) and all(isinstance(base.get(k), str) for k in ("variant", "config", "weights"))):
        raise ModelFileError(f"{path}: the LoRA does not name its base model; {fix}")
    modules = _check_pairs(path, tensors.shapes, rank, fix)
    loaded = tensors.load()
    _check_finite(path, loaded)
    pairs = {module: (loaded[f"{module}.lora_A.weight"], loaded[f"{module}.lora_B.weight"]) for module in modules}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted(loaded):
        digest.update(name.encode() + loaded[name].float().numpy().tobytes())
    return LoraAdapter(Path(path), pairs, rank, float(alpha), base, digest.hexdigest()[:16])


def _check_finite(path, loaded: dict) -> None:
    """Refuse an adapter with NaN or infinite values (what a diverged training run writes): it would spread them into
    every output of the model."""
    for name in sorted(loaded):
        bad = int((~torch.isfinite(loaded[name])).sum())
        if bad:
            raise ModelFileError(f"{path}: tensor {name} holds {bad} NaN or infinite value(s); this adapter is broken "
                                 "(e.g. its training diverged): use an earlier checkpoint or train it again")


def _check_pairs(path, shapes: dict, rank: int, fix: str) -> list[str]:
    parts = {}
    for name, shape in shapes.items():
        match = _KEY.fullmatch(name)
        if not match or len(shape) != 2:
            raise ModelFileError(f"{path}: tensor {name[:80]!r} {shape} is not a LoRA A or B matrix; {fix}")
        parts.setdefault(match["module"], {})[match["part"]] = shape
    if not parts:
        raise ModelFileError(f"{path}: holds no LoRA weights; {fix}")
    for module, pair in parts.items():
        if set(pair) != {"A", "B"} or pair["A"][0] != rank or pair["B"][1] != rank:
            raise ModelFileError(f"{path}: {module}'s LoRA matrices {pair} do not pair at rank {rank}; {fix}")
    return sorted(parts)


def parse_lora_argument(text: str) -> tuple[LoraAdapter, float]:
    """FILE or FILE:STRENGTH, loaded and checked (the last colon splits, so a Windows drive letter stays in the path)."""
    path, _, strength = text.rpartition(":")
    try:
        value = float(strength)
    except ValueError:
        return load_lora(text), 1.0
    return load_lora(path), check_strength(value, text)


def check_fits(adapter: LoraAdapter, model, identity: dict | None = None) -> None:
    """The adapter was trained on this model (same variant, config and base weights) and its shapes fit."""
    identity = identity or model_identity(model)
    for key, what in (("variant", "variant"), ("config", "config"), ("weights", "base weights")):
        if adapter.base[key] != identity[key]:
            raise ModelFileError(
                f"{adapter.path}: this LoRA was trained on another base model (its {what}: {adapter.base[key]}, this "
                f"model's: {identity[key]}); load the MTV {adapter.base['variant']!r} model it was trained on")
    for module, (down, up) in adapter.pairs.items():
        try:
            linear = model.get_submodule(module)
        except AttributeError:
            raise ModelFileError(f"{adapter.path}: adapts {module}, which this model does not have; load the model "
                                 "it was trained on") from None
        if (getattr(linear, "in_features", None), getattr(linear, "out_features", None)) != (down.shape[1], up.shape[0]):
            raise ModelFileError(f"{adapter.path}: {module} is {linear} but the LoRA expects "
                                 f"{down.shape[1]} -> {up.shape[0]}; load the model it was trained on")


def check_strength(strength: float, where: str) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not -MAX_STRENGTH <= strength <= MAX_STRENGTH:
        raise ModelFileError(f"LoRA strength {strength!r} ({where}) is out of range; use -{MAX_STRENGTH:g}..{MAX_STRENGTH:g} "
                             "(1 = as trained, 0 = off)")
    return float(strength)


@contextmanager
def applied(model, loras=()):
    """Run `model` with [(adapter, strength)] added to its Linears, and without them afterwards."""
    handles = []
    try:
        for adapter, strength in loras:
            if strength == 0:
                continue
            for module, (down, up) in adapter.pairs.items():
                hook = _LowRankUpdate(down, up, strength * adapter.scale)
                handles.append(model.get_submodule(module).register_forward_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()


class _LowRankUpdate:
    """Forward hook adding scale * B A x to a Linear's output; the matrices follow the input's device and dtype."""

    def __init__(self, down: torch.Tensor, up: torch.Tensor, scale: float):
        self.down, self.up, self.scale = down, up, scale
        self._placed = {}

    def __call__(self, module, inputs, output):
        x = inputs[0]
        key = (x.device, x.dtype)
        if key not in self._placed:
            self._placed[key] = (self.down.to(x.device, x.dtype), self.up.to(x.device, x.dtype))
        down, up = self._placed[key]
        return output + self.scale * torch.nn.functional.linear(torch.nn.functional.linear(x, down), up)


def merged(weights: dict, loras) -> dict:
    """A model state dict with [(adapter, strength)] merged into the adapted weights (W + s * alpha/r * B A), each
    in its weight's dtype. Refused when a merged weight is not finite there (e.g. huge adapter values that overflow
    fp16 or bf16), before anything is returned to be written."""
    result = dict(weights)
    for adapter, strength in loras:
        for module, (down, up) in adapter.pairs.items():
            key = f"{module}.weight"
            if key not in result:
                raise ModelFileError(f"{adapter.path}: adapts {module}, but the base weights have no {key} (fp8 "
                                     "weights? pass them through mtv_core.models.fp8.dequantized_state first)")
            base = result[key]
            result[key] = (base.float() + strength * adapter.scale * (up.float() @ down.float())).to(base.dtype)
            _check_merged(adapter, strength, key, result[key])
    return result


def _check_merged(adapter: LoraAdapter, strength: float, key: str, weight: torch.Tensor) -> None:
    bad = int((~torch.isfinite(weight)).sum())
    if bad:
        raise ModelFileError(
            f"{adapter.path} at strength {strength:g} makes {bad} value(s) of {key} NaN or infinite in {weight.dtype} "
            "(its weights are too large for the model); nothing was written: use a lower strength or another adapter")
