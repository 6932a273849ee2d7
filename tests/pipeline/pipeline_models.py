"""Tiny random models and feature stand-ins shared by the pipeline tests."""

import torch

from mtv_core import testing


class WindowedFeatures:
    """Per-stream flat features (N, dim) with the `flat_window`, `speech_levels` and `flags` contract of
    mtv_core.audio.AudioFeatures; `speech_levels`: (N,) dBFS, or None for features without levels."""

    def __init__(self, per_stream: dict, fps: float = 24.0, flags: dict | None = None, speech_levels=None):
        self.per_stream = per_stream
        self.fps = fps
        self.flags = flags or {}
        self.levels = speech_levels

    def speech_levels(self, start: int, length: int):
        if self.levels is None:
            return None
        window = torch.full((length,), -200.0)
        piece = self.levels[start:start + length]
        window[:piece.shape[0]] = piece
        return window

    @property
    def num_frames(self) -> int:
        return next(iter(self.per_stream.values())).shape[0]

    def flat_window(self, start: int, length: int) -> dict:
        windows = {}
        for name, values in self.per_stream.items():
            window = torch.zeros(length, values.shape[1])
            piece = values[start:start + length]
            window[:piece.shape[0]] = piece
            windows[name] = window
        return windows


def make_tiny_model(name: str = "tiny-single", seed: int = 0):
    """A tiny model at a 4x6 latent (32x48 pixels) so that VAE decoding stays fast on two cores."""
    return testing.tiny_mtv_model(name, seed=seed, sample_height=4, sample_width=6)


def make_tiny_vae(seed: int = 0):
    return testing.tiny_vae(seed)


def make_features(model, frames: int = 120, seed: int = 1) -> WindowedFeatures:
    generator = torch.Generator().manual_seed(seed)
    dim = model.config.audio_feature_dim
    return WindowedFeatures({name: torch.randn(frames, dim, generator=generator) for name in model.audio_streams})


def make_session(model, vae, seed: int = 0, steps: int = 2, colour_match: bool = False, **listeners):
    """A RenderSession on the CPU with few steps; `listeners`: progress, interrupt, preview, decode_progress."""
    from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions
    from mtv_core.pipeline.session import RenderSession

    config = GenerationConfig(steps=steps, seed=seed, colour_match=colour_match)
    return RenderSession(model, vae, config, MemoryOptions(), **listeners)


def make_request(features, frames: int, text=None, schedule=None, start_image=None):
    """A RenderRequest for `frames` output frames of features (one prompt of seeded embeddings unless given)."""
    from mtv_core.pipeline.prompt_schedule import PromptSchedule
    from mtv_core.pipeline.session import RenderRequest

    text = torch.randn(1, 226, 32, generator=torch.Generator().manual_seed(9)) if text is None else text
    return RenderRequest(text, schedule or PromptSchedule.single("a"), features, frames / 24.0, start_image)
