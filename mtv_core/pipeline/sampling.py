"""Samplers as small functions in the style of k-diffusion: one loop, `sample`, and per sampler a step function
`step(scheduler, v, x, index, previous_x0, generator) -> (x, x0)` that computes one update.

`model_fn(x, t) -> v` is the (already guided) v-prediction for latents x (B, T, C, h, w) at integer timestep t.
Clean prefix frames (a start image or the previous segment's tail) are pasted into x before every model call
and once more at the end, without re-noising, as the official sampler does.

`progress(step, total)` is told before each step and at the end; `preview(step, total, x0)`, when given, after each
step with that step's estimate of the clean latents (the prefix pasted in), for live previews.
"""

from contextlib import contextmanager
from typing import Callable

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

from ..errors import GenerationError
from ..spec import SAMPLERS, TRAIN_TIMESTEPS

OFFICIAL_SCHEDULER_CONFIG = dict(
    num_train_timesteps=TRAIN_TIMESTEPS, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=1.0,
    timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False, steps_offset=0,
)

ModelFn = Callable[[torch.Tensor, int], torch.Tensor]


class GenerationInterrupted(GenerationError):
    """The user stopped the job; finished segments stay on disk and a rerun resumes from them."""


def paste_prefix(x: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
    if prefix is None:
        return x
    x = x.clone()
    x[:, :prefix.shape[1]] = prefix.to(x.dtype)
    return x


def _step_hooks(step: int, total: int, progress, interrupt) -> None:
    if interrupt is not None and interrupt():
        raise GenerationInterrupted(f"generation interrupted at step {step} of {total}; run the same job again "
                                    "to resume from its finished segments")
    if progress is not None:
        progress(step, total)


def _show(preview, step: int, total: int, x0: torch.Tensor, prefix: torch.Tensor | None) -> None:
    if preview is not None:
        preview(step, total, paste_prefix(x0, prefix))


@contextmanager
def interruptible(modules, interrupt):
    """Ask `interrupt()` before each of `modules` runs (each transformer block, each VAE decoder slice), so a stop
    request lands within one block instead of after a whole step or decode; `interrupt` may raise or return True."""
    if interrupt is None:
        yield
        return

    def check(module, args):
        if interrupt():
            raise GenerationInterrupted("generation interrupted; run the same job again to resume from its finished segments")

    handles = [module.register_forward_pre_hook(check) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def dpm_step(scheduler, v: torch.Tensor, x: torch.Tensor, index: int, previous_x0: torch.Tensor | None,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One official update: CogVideoXDPMScheduler's stochastic DPM-Solver++(2M), second order through the previous
    step's clean estimate. Returns (x, x0)."""
    timesteps = scheduler.timesteps
    t_back = timesteps[index - 1] if index > 0 else None
    return scheduler.step(v, previous_x0, timesteps[index], t_back, x, generator=generator, return_dict=False)


def ddim_step(scheduler, v: torch.Tensor, x: torch.Tensor, index: int, previous_x0: torch.Tensor | None,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM (eta 0) update on the same schedule. Returns (x, x0)."""
    return scheduler.step(v, scheduler.timesteps[index], x, eta=0.0, generator=generator, return_dict=False)


SCHEDULER_AND_STEP = {"dpm": (CogVideoXDPMScheduler, dpm_step), "ddim": (CogVideoXDDIMScheduler, ddim_step)}


def _scheduler_and_step(sampler: str):
    if sampler not in SCHEDULER_AND_STEP:
        raise GenerationError(f"sampler {sampler!r} is unknown; use one of {SAMPLERS}")
    return SCHEDULER_AND_STEP[sampler]


def make_scheduler(sampler: str = "dpm"):
    scheduler_class, _ = _scheduler_and_step(sampler)
    return scheduler_class(**OFFICIAL_SCHEDULER_CONFIG)


@torch.no_grad()
def sample(sampler: str, model_fn: ModelFn, x: torch.Tensor, steps: int, generator: torch.Generator | None = None,
           prefix: torch.Tensor | None = None, progress=None, interrupt=None, preview=None) -> torch.Tensor:
    """The one sampler loop: hooks, prefix pasting and previews here, the update in the sampler's step function."""
    _, step = _scheduler_and_step(sampler)
    scheduler = make_scheduler(sampler)
    scheduler.set_timesteps(steps, device=x.device)
    x0 = None
    for index, t in enumerate(scheduler.timesteps):
        _step_hooks(index, steps, progress, interrupt)
        x = paste_prefix(x, prefix)
        x, x0 = step(scheduler, model_fn(x, int(t)), x, index, x0, generator)
        _show(preview, index + 1, steps, x0, prefix)
    _step_hooks(steps, steps, progress, None)
    return paste_prefix(x, prefix)
