"""What travels on the pack's custom sockets (MTV_MODEL, MTV_TEXT, ...): small dataclasses over mtv_core objects."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelHandle:
    """MTV_MODEL: a loaded transformer with the memory options it was prepared for, the step cache to use and the
    LoRA adapters to apply while it samples (the model's own weights are never changed)."""

    model: torch.nn.Module
    memory: object  # mtv_core.pipeline.generate.MemoryOptions
    swap: object | None
    name: str
    cache: object | None = None  # mtv_core.pipeline.speed.StepCache
    loras: tuple = ()  # ((mtv_core.lora.LoraAdapter, strength), ...)


@dataclass
class TextConditioning:
    """MTV_TEXT: one prompt or a prompt schedule, with T5 embeddings (N prompts, 226, D)."""

    schedule: object  # mtv_core.pipeline.prompt_schedule.PromptSchedule
    embeddings: torch.Tensor


@dataclass
class EncodedAudio:
    """MTV_AUDIO_FEATURES: wav2vec2 features per stream plus the audio's duration."""

    features: object  # mtv_core.audio.AudioFeatures
    duration: float


@dataclass
class MTVConditioning:
    """MTV_CONDITIONING: text + audio features (scaled by the stream strengths) + guidance scales."""

    text: TextConditioning
    audio: EncodedAudio
    guidance: object  # mtv_core.pipeline.guidance.GuidanceScales


@dataclass
class MTVLatents:
    """MTV_LATENT: denoised latents in MTV's own layout (B, T, C, h, w), multiplied by the VAE scale 0.7. A socket
    of its own, so ComfyUI's core nodes (which read LATENT as (B, C, T, H, W), unscaled) cannot misread them."""

    samples: torch.Tensor
