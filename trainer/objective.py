"""The official training objective: noise the latents, condition with dropout, predict v.

Loss (official `VideoDiffusionLoss` + `DiscreteDenoiser`/`VideoScaling`): the v output is turned into
x0 = sqrt(a) x_t - sqrt(1 - a) v and the loss is (1 / (1 - a)) * |x0_hat - x0|^2, a = alpha_bar_t.
Since x0_hat - x0 = -sqrt(1 - a) (v_hat - v), that is exactly the plain MSE on v, which we compute
directly (no 1/(1 - a) blow-up near t = 0 in low precision).

`motion_weight` (not official, default 0) weights each latent position by how much the clip moves there, so a
mouth or a hopping object, a few latent pixels of a still frame, is not drowned by the static background.

`temporal_weight` (not official, default 0) adds W x the mean squared change of the v error from one latent frame to
the next. An error shared by neighbouring frames costs nothing there; one that jumps from frame to frame (flicker)
costs up to twice its plain MSE again. The v error is the x0 error over sqrt(1 - a), so this is the official weighting
applied to the frame-to-frame change of the x0 error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtv_core.pipeline.sampling import make_scheduler

# Clean-prefix frame masks (official `latent_frame_mask`, total p = 0.25).
MASK_MODES = {
    "image_head": 0.22,
    "random": 0.01,
    "image_tail": 0.005,
    "image_head_tail": 0.005,
    "interpolate": 0.002,
    "quarter_random": 0.002,
    "quarter_head": 0.002,
    "quarter_tail": 0.002,
    "quarter_head_tail": 0.002,
}


@dataclass
class ConditioningDropout:
    text: float = 0.1
    audio: float = 0.05
    per_stream: float = 0.0
    clean_mask: float = 0.25


def official_alphas_cumprod() -> torch.Tensor:
    """alpha_bar over the 1000 training timesteps: the sampler's zero-SNR scaled-linear schedule."""
    return make_scheduler("dpm").alphas_cumprod.to(torch.float64)


def clean_frame_mask(mode: str, frames: int, generator: torch.Generator) -> torch.Tensor:
    """(frames,) bool, True = clean prefix/suffix frame."""
    mask = torch.zeros(frames, dtype=torch.bool)
    quarter = max(1, frames // 4)
    if mode in ("image_head", "image_head_tail"):
        mask[0] = True
    if mode in ("image_tail", "image_head_tail"):
        mask[-1] = True
    if mode == "random":
        mask = torch.rand(frames, generator=generator) < 0.5
        mask[int(torch.randint(frames, (1,), generator=generator))] = False
    if mode == "interpolate":
        mask[0] = mask[-1] = True
        mask[frames // 2] = True
    if mode in ("quarter_head", "quarter_head_tail"):
        mask[:quarter] = True
    if mode in ("quarter_tail", "quarter_head_tail"):
        mask[-quarter:] = True
    if mode == "quarter_random":
        start = int(torch.randint(frames - quarter + 1, (1,), generator=generator))
        mask[start : start + quarter] = True
    return mask


def sample_clean_masks(batch: int, frames: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Per sample: with `probability`, a mask drawn from the official modes (in their proportions)."""
    names = list(MASK_MODES)
    weights = torch.tensor([MASK_MODES[name] for name in names])
    masks = torch.zeros(batch, frames, dtype=torch.bool)
    for row in range(batch):
        if float(torch.rand(1, generator=generator)) < probability:
            mode = names[int(torch.multinomial(weights, 1, generator=generator))]
            masks[row] = clean_frame_mask(mode, frames, generator)
    return masks


def sample_timesteps(batch: int, rank: int, world: int, generator: torch.Generator, num_steps: int = 1000) -> torch.Tensor:
    """Uniform over [0, num_steps), stratified: each of the world*batch samples gets its own interval."""
    slots = torch.arange(batch) + rank * batch
    offsets = torch.rand(batch, generator=generator, dtype=torch.float64)
    return ((slots + offsets) * num_steps / (world * batch)).long().clamp(max=num_steps - 1)


def drop_conditioning(text: torch.Tensor, features: dict, dropout: ConditioningDropout, generator: torch.Generator):
    """Zero the T5 embedding (p text), all audio feature streams together (p audio) and, with
    `per_stream`, each stream independently. Zero features are the official "null" input."""
    batch = text.shape[0]
    keep_text = (torch.rand(batch, generator=generator) >= dropout.text).float()
    keep_audio = (torch.rand(batch, generator=generator) >= dropout.audio).float()
    text = text * keep_text.view(-1, 1, 1).to(text)
    dropped = {}
    for name, value in features.items():
        keep = keep_audio * (torch.rand(batch, generator=generator) >= dropout.per_stream).float()
        dropped[name] = value * keep.view(-1, 1, 1).to(value)
    return text, dropped


class DiffusionObjective(nn.Module):
    """Wraps the transformer so that one `forward` is one loss: what DDP / DeepSpeed / FSDP wrap."""
    def __init__(self, model: nn.Module, alphas_cumprod: torch.Tensor, motion_weight: float = 0.0,
                 temporal_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.motion_weight = motion_weight
        self.temporal_weight = temporal_weight
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)

    def forward(self, latents, text, features, timesteps, clean_mask, noise):
        alpha = self.alphas_cumprod[timesteps][:, None].expand(-1, latents.shape[1]).clone()
        alpha[clean_mask] = self.alphas_cumprod[0]
        alpha = alpha[:, :, None, None, None]
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        target = alpha.sqrt() * noise - (1 - alpha).sqrt() * latents
        tokens = self.model.project_audio(features)
        prediction = self.model(noisy, text, timesteps, audio_tokens=tokens, clean_mask=clean_mask)
        residual = prediction.float() - target.float()
        loss = self._weighted_mse(residual, latents)
        if self.temporal_weight:
            loss = loss + self.temporal_weight * residual.diff(dim=1).pow(2).mean()
        return loss

    def _weighted_mse(self, residual: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        if not self.motion_weight:
            return residual.pow(2).mean()
        weight = motion_weights(latents.float(), self.motion_weight)
        return (residual.pow(2) * weight).mean() / weight.mean()


def motion_weights(latents: torch.Tensor, strength: float) -> torch.Tensor:
    """(B, 1, 1, H, W): 1 + strength x the temporal spread of the clean latents there, relative to the clip's mean
    spread; a clip that does not move at all is weighted evenly."""
    spread = latents.std(dim=1, keepdim=True).mean(dim=2, keepdim=True)
    relative = spread / spread.mean(dim=(3, 4), keepdim=True).clamp_min(1e-6)
    return 1 + strength * relative
