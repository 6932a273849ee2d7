"""Which parameters train (`--train`), LoRA adapters (trained, exported as adapter files, loaded to continue), merged
export, and EMA."""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from mtv_core.spec import EFFECTS, MUSIC, SPEECH, SPEECH2

from .errors import TrainerError

TRAIN_MODES = ("official", "audio", "lora", "all")
_AUDIO = re.compile(r"audio|music|speaker")
# The official trainable set (suimuc/MTV_Framework: SAT `disable_untrainable_params` with train_prefix
# {model: [audio, attention]}): all MTV modules, the backbone self-attention
# projections (SAT query_key_value/dense) and the post-attention LayerNorm. QK-LayerNorm stays frozen.
_OFFICIAL_BACKBONE = re.compile(r"attn1\.(to_q|to_k|to_v|to_out)\.|norm2\.norm\.")
# LoRA adapts the backbone's joint self-attention and every stream's audio cross-attention.
LORA_TARGETS = r".*\.(attn1|audio_attn\.\w+)\.(to_q|to_k|to_v|to_out\.0)"
# The parameters that serve one audio stream alone (`--freeze-streams`); the shared interaction blocks
# (attention, FFN, modulation) are not part of any.
STREAM_PARAMETERS = {
    SPEECH: re.compile(rf"audio_encoders\.{SPEECH}\.|audio_(attn|norm)\.({SPEECH}|{SPEECH2})\.|norm_{SPEECH}\.|speaker_embeddings"),
    EFFECTS: re.compile(rf"audio_encoders\.{EFFECTS}\.|audio_(attn|norm)\.{EFFECTS}\.|norm_{EFFECTS}\."),
    MUSIC: re.compile(rf"audio_encoders\.{MUSIC}\.|{MUSIC}_adaln\."),
}


def is_audio_parameter(name: str) -> bool:
    return bool(_AUDIO.search(name))


def select_trainable(model: nn.Module, mode: str, lora_rank: int = 64, frozen_streams=()) -> list[str]:
    """Set requires_grad per `mode` (adding LoRA adapters for "lora"), minus the pathways of
    `frozen_streams`; return the trained names."""
    if mode not in TRAIN_MODES:
        raise TrainerError(f"--train {mode!r} is unknown; choose one of {', '.join(TRAIN_MODES)}")
    unknown = sorted(set(frozen_streams) - set(STREAM_PARAMETERS))
    if unknown:
        raise TrainerError(f"--freeze-streams {' '.join(unknown)}: unknown stream; choose from {', '.join(STREAM_PARAMETERS)}")
    if mode == "lora":
        add_lora(model, lora_rank)
    for name, parameter in model.named_parameters():
        frozen = any(STREAM_PARAMETERS[stream].search(name) for stream in frozen_streams)
        parameter.requires_grad_(_trains(name, mode) and not frozen)
    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    if not names:
        raise TrainerError(f"--train {mode}: no parameter of this model matches; is it an MTV model?")
    return names


def _trains(name: str, mode: str) -> bool:
    if mode == "lora":  # the adapters alone: the result is a small file for the model it was trained on
        return "lora_" in name
    if mode == "all" or is_audio_parameter(name):
        return True
    if mode == "official":
        return bool(_OFFICIAL_BACKBONE.search(name))
    return False


def add_lora(model: nn.Module, rank: int) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    if rank < 1:
        raise TrainerError(f"--lora-rank {rank} is invalid; use a positive rank such as 64")
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights=True), model)


def adapter_weights(state: dict) -> dict:
    """The LoRA matrices of a trained model's state, named as in adapter files (`<module>.lora_A.weight`)."""
    return {key.replace(".default.weight", ".weight"): value.detach().cpu() for key, value in state.items()
            if ".lora_A.default." in key or ".lora_B.default." in key}


def load_adapter(model: nn.Module, adapter) -> None:
    """Start the model's (injected) LoRA matrices from an adapter (mtv_core.lora.LoraAdapter) of the same rank."""
    parameters = dict(model.named_parameters())
    for module, (down, up) in adapter.pairs.items():
        for part, value in (("A", down), ("B", up)):
            name = f"{module}.lora_{part}.default.weight"
            if name not in parameters or parameters[name].shape != value.shape:
                raise TrainerError(f"{adapter.path}: {module} does not fit this run's LoRA (rank {adapter.rank}); "
                                   "continue with the same --lora-rank and model")
            with torch.no_grad():
                parameters[name].copy_(value)


def merged_weights(state: dict, lora_scaling: float = 1.0) -> dict:
    """A plain model state dict: LoRA deltas merged into their base weights (W + s * B @ A)."""
    merged = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        plain = key.replace(".base_layer.", ".")
        if ".base_layer.weight" in key:
            prefix = key[: -len(".base_layer.weight")]
            down, up = state[f"{prefix}.lora_A.default.weight"], state[f"{prefix}.lora_B.default.weight"]
            value = value + lora_scaling * (up.float() @ down.float()).to(value.dtype)
        merged[plain] = value.detach().cpu()
    return merged


class EMA:
    """Exponential moving average (fp32) of the trained parameters, kept as each engine holds them (whole tensors,
    or this process's shards under FSDP2)."""

    def __init__(self, model: nn.Module, names: list[str], decay: float):
        if not 0.0 < decay < 1.0:
            raise TrainerError(f"--ema {decay} is invalid; use a decay in (0, 1) such as 0.999")
        self.decay = decay
        parameters = dict(model.named_parameters())
        self.shadow = {name: parameters[name].detach().float().clone() for name in names}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, parameter in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(parameter.detach().float(), 1.0 - self.decay)

    def full_state(self) -> dict:
        """Whole CPU tensors (gathers shards: every process must call it)."""
        return {name: _whole(value).cpu() for name, value in self.shadow.items()}

    def load_full_state(self, state: dict) -> None:
        """Inverse of `full_state`, on every process."""
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise TrainerError(f"the checkpoint's EMA lacks {missing[0]}; resume with the same --train and --ema")
        self.shadow = {name: _like(state[name], value) for name, value in self.shadow.items()}



def with_averages(weights: dict, averages: dict) -> dict:
    """Model weights with the averaged values (EMA.full_state) in place of the trained ones (before LoRA merging)."""
    return {key: averages[key].to(value.dtype) if key in averages else value for key, value in weights.items()}


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _like(whole: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """`whole` laid out as `template` (sharded like it when it is a DTensor), in fp32."""
    whole = whole.float()
    if isinstance(template, DTensor):
        return distribute_tensor(whole.to(template.device), template.device_mesh, template.placements)
    return whole.to(template.device)
