"""Keeps a diffusers step cache (first-block cache, TaylorSeer) to block work done for the same conditioning.

The text, the audio tokens and the clean prefix enter every block, so block work computed for other conditioning must
never be reused: the hook restarts the model's cache whenever a call's conditioning differs from the previous call's.
Guidance branches therefore belong in one batched call.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch
from diffusers.hooks import HookRegistry, ModelHook

HOOK_NAME = "mtv_cache_per_conditioning"
# The forward inputs that enter every block besides the latents and the timestep; those a model's forward lacks are
# left out (a plain CogVideoX transformer has only the text).
CONDITIONING_INPUTS = ("encoder_hidden_states", "audio_tokens", "clean_mask")


class CachePerConditioningHook(ModelHook):
    """Runs each forward in the model's cache context, restarting the cache when the conditioning changes."""

    def __init__(self, inputs: tuple[str, ...]):
        super().__init__()
        self.inputs = inputs
        self.previous: dict | None = None

    def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        self.signature = inspect.signature(type(module).forward)
        return module

    def new_forward(self, module, *args, **kwargs):
        given = self.signature.bind(module, *args, **kwargs).arguments
        conditioning = _flatten({name: given.get(name) for name in self.inputs if name in self.signature.parameters})
        if not _same_conditioning(self.previous, conditioning):
            module._reset_stateful_cache()
            self.previous = {name: None if value is None else value.detach().clone() for name, value in conditioning.items()}
        with module.cache_context("denoise"):
            return self.fn_ref.original_forward(*args, **kwargs)


@contextmanager
def cache_per_conditioning(model: torch.nn.Module, inputs: tuple[str, ...] = CONDITIONING_INPUTS):
    """While active, the step cache enabled on `model` (diffusers' CacheMixin) serves one conditioning at a time."""
    registry = HookRegistry.check_if_exists_or_initialize(model)
    registry.register_hook(CachePerConditioningHook(inputs), HOOK_NAME)
    try:
        yield
    finally:
        registry.remove_hook(HOOK_NAME, recurse=False)


def _flatten(conditioning: dict) -> dict:
    """A dict input (the audio tokens by stream) as one entry per tensor."""
    flat = {}
    for name, value in conditioning.items():
        if isinstance(value, dict):
            flat.update({f"{name} {key}": tensor for key, tensor in value.items()})
        else:
            flat[name] = value
    return flat


def _same_conditioning(previous: dict | None, current: dict) -> bool:
    return previous is not None and previous.keys() == current.keys() and all(
        _same_tensor(previous[name], current[name]) for name in current)


def _same_tensor(old: torch.Tensor | None, new: torch.Tensor | None) -> bool:
    if old is None or new is None:
        return old is new
    return old.shape == new.shape and old.dtype == new.dtype and old.device == new.device and torch.equal(old, new)
