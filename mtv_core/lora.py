"""LoRA adapters for MTV models: what identifies their base model, applying them while a model runs, merging them.
Their files are read and written by `mtv_core.checkpoints.lora`.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ModelFileError

MAX_RANK = 1024
MAX_STRENGTH = 4.0
# Tensors outside the transformer blocks that LoRA training never changes: they identify the base model.
IDENTITY_TENSORS = ("patch_embed.proj.weight", "proj_out.weight", "time_embedding.linear_1.weight")


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
