"""The loss weighting (official, and motion-weighted), the schedule, timestep stratification, dropout and
clean-frame masks."""

import torch

from mtv_core.pipeline.sampling import make_scheduler
from trainer.objective import (
    ConditioningDropout,
    DiffusionObjective,
    drop_conditioning,
    motion_weights,
    official_alphas_cumprod,
    sample_clean_masks,
    sample_timesteps,
)


def test_v_mse_equals_the_official_x0_loss_weighted_by_one_over_one_minus_alpha_bar():
    generator = torch.Generator().manual_seed(0)
    x0, noise, v_hat = (torch.randn(4, 13, 16, 2, 2, generator=generator, dtype=torch.float64) for _ in range(3))
    alpha = official_alphas_cumprod()[torch.tensor([10, 250, 600, 990])].view(-1, 1, 1, 1, 1)
    x_t = alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise
    v = alpha.sqrt() * noise - (1 - alpha).sqrt() * x0
    x0_hat = alpha.sqrt() * x_t - (1 - alpha).sqrt() * v_hat  # the official denoiser: c_skip x + c_out v
    official = (((x0_hat - x0) ** 2) / (1 - alpha)).mean()
    torch.testing.assert_close(((v_hat - v) ** 2).mean(), official)


def test_motion_weights_favour_where_the_clip_moves_and_leave_a_still_clip_even():
    latents = torch.zeros(2, 5, 16, 4, 6)
    latents[0, :, :, 1, 2] = torch.arange(5.0).view(5, 1)  # one moving position in clip 0; clip 1 is still
    weights = motion_weights(latents, strength=4.0)
    assert weights.shape == (2, 1, 1, 4, 6)
    assert float(weights[0, 0, 0, 1, 2]) == 1 + 4 * 24  # its spread is 24 times the clip's mean spread
    assert float(weights[0].min()) == 1.0 and bool((weights[1] == 1.0).all())


class _Constant(torch.nn.Module):
    """A 'transformer' whose prediction is a fixed tensor, so the loss is a known function of it."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction

    def project_audio(self, features):
        return features

    def forward(self, noisy, text, timesteps, audio_tokens=None, clean_mask=None):
        return self.prediction


def test_motion_weighted_loss_counts_errors_where_the_clip_moves_more():
    latents = torch.zeros(1, 5, 16, 4, 6)
    latents[0, :, :, 1, 2] = torch.arange(5.0).view(5, 1)
    alphas, noise = official_alphas_cumprod(), torch.zeros_like(latents)
    timesteps, mask = torch.tensor([999]), torch.zeros(1, 5, dtype=torch.bool)  # alpha 0: the target v is -latents
    target = -latents
    off_moving, off_still = target.clone(), target.clone()
    off_moving[0, :, :, 1, 2] += 1
    off_still[0, :, :, 3, 5] += 1
    losses = {}
    for weight in (0.0, 4.0):
        for name, prediction in (("moving", off_moving), ("still", off_still)):
            losses[weight, name] = float(DiffusionObjective(_Constant(prediction), alphas, weight)(latents, None, {}, timesteps, mask, noise))
    assert abs(losses[0.0, "moving"] - 1 / 24) < 1e-7 and losses[0.0, "still"] == losses[0.0, "moving"]  # a plain mean
    assert losses[4.0, "moving"] > 20 * losses[4.0, "still"]


def test_temporal_weight_charges_errors_that_change_between_latent_frames():
    latents, noise = torch.zeros(1, 5, 16, 4, 6), torch.zeros(1, 5, 16, 4, 6)
    alphas, timesteps, mask = official_alphas_cumprod(), torch.tensor([999]), torch.zeros(1, 5, dtype=torch.bool)
    shared = torch.full_like(latents, 0.5)  # the same error in every frame
    flicker = 0.5 * (-1.0) ** torch.arange(5.0).view(1, 5, 1, 1, 1).expand_as(latents)  # +0.5, -0.5, ...
    losses = {}
    for weight in (0.0, 1.0):
        for name, prediction in (("shared", shared), ("flicker", flicker)):
            objective = DiffusionObjective(_Constant(prediction), alphas, temporal_weight=weight)
            losses[weight, name] = float(objective(latents, None, {}, timesteps, mask, noise))
    assert losses[0.0, "shared"] == losses[0.0, "flicker"] == 0.25  # the plain MSE cannot tell them apart
    assert losses[1.0, "shared"] == 0.25
    assert abs(losses[1.0, "flicker"] - (0.25 + 1.0)) < 1e-6  # every step between frames changes the error by 1


def test_schedule_is_the_samplers_zero_snr_schedule():
    alphas = official_alphas_cumprod()
    torch.testing.assert_close(alphas, make_scheduler("dpm").alphas_cumprod.double())
    assert alphas.shape == (1000,) and float(alphas[-1]) == 0.0 and 0.999 < float(alphas[0]) < 1.0


def test_timesteps_are_stratified_over_ranks():
    generator = torch.Generator().manual_seed(1)
    rank0 = sample_timesteps(2, rank=0, world=2, generator=generator)
    rank1 = sample_timesteps(2, rank=1, world=2, generator=generator)
    assert 0 <= rank0[0] < 250 <= rank0[1] < 500 <= rank1[0] < 750 <= rank1[1] < 1000


def test_dropout_zeroes_text_all_streams_or_single_streams():
    generator = torch.Generator().manual_seed(2)
    text = torch.ones(4000, 3, 2)
    features = {name: torch.ones(4000, 49, 5) for name in ("speech", "effects", "music")}
    dropped_text, dropped = drop_conditioning(text, features, ConditioningDropout(text=0.1, audio=0.05, per_stream=0.2), generator)
    zero = {name: value.abs().sum(dim=(1, 2)) == 0 for name, value in dropped.items()}
    assert abs(float((dropped_text.abs().sum(dim=(1, 2)) == 0).float().mean()) - 0.1) < 0.02
    all_zero = zero["speech"] & zero["effects"] & zero["music"]
    # joint 5 % plus independent 20 % per stream (0.2^3 of the rest)
    assert abs(float(all_zero.float().mean()) - (0.05 + 0.95 * 0.008)) < 0.015
    assert abs(float(zero["speech"].float().mean()) - (0.05 + 0.95 * 0.2)) < 0.025
    assert bool((zero["speech"] & ~zero["music"]).any())


def test_clean_masks_mostly_mark_the_first_latent():
    masks = sample_clean_masks(4000, 13, 0.25, torch.Generator().manual_seed(3))
    masked = masks.any(dim=1)
    assert abs(float(masked.float().mean()) - 0.25) < 0.025
    head_only = masks[:, 0] & (masks.sum(dim=1) == 1)
    assert abs(float(head_only.float().mean()) - 0.22) < 0.025
    assert not bool(masks.all(dim=1).any())
