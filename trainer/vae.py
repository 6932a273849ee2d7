"""`python -m trainer vae`: fit a (small) CogVideoX VAE to your clips, for a model trained from scratch.

The official MTV weights use the released CogVideoX VAE as it is; this is for new, small models such as
the demo. Loss: pixel MSE + a small KL term, on random 9-frame windows (1 + 4k frames, as the causal VAE
takes them). Pixels that change within a window weigh more: sound-driven motion (a mouth, a hopping object)
covers a few pixels, and a plain MSE lets the still background drown it out.

For a steadier picture, `--temporal-weight` adds the squared difference between the reconstruction's and the
clip's frame-to-frame change (the decoder makes four frames of each latent frame, and a small one makes them
flicker), and `--latent-noise` decodes latents with a little noise added, as a model's sampled latents are never
exactly the encoder's.
"""

from __future__ import annotations

import random
from pathlib import Path

import av
import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX

from mtv_core.checkpoints import load_vae, save_vae

from .errors import TrainerError
from .outputs import refuse_existing
from .prepare import find_videos

WINDOW_FRAMES = 9
KL_WEIGHT = 1e-6
MOTION_WEIGHT = 20.0  # extra loss weight per unit of a pixel's distance from its window's mean frame


def read_clip(path: Path, window: int = WINDOW_FRAMES) -> torch.Tensor:
    """All frames of a video: (3, N, H, W) in [-1, 1]."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if len(frames) < window:
        raise TrainerError(f"{path} has {len(frames)} frames; the VAE trains on {window}-frame windows")
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1


def new_vae(widths) -> "torch.nn.Module":
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))
    return AutoencoderKLCogVideoX(block_out_channels=tuple(widths), latent_channels=16, layers_per_block=1,
                                  norm_num_groups=groups, scaling_factor=0.7)


def random_batch(clips: list[torch.Tensor], size: int, rng: random.Random, frames: int = WINDOW_FRAMES) -> torch.Tensor:
    windows = []
    for _ in range(size):
        clip = rng.choice(clips)
        start = rng.randrange(clip.shape[1] - frames + 1)
        windows.append(clip[:, start:start + frames])
    return torch.stack(windows)


def motion_weights(batch: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, H, W): 1 for still pixels, more for pixels that move within the window."""
    motion = (batch - batch.mean(dim=2, keepdim=True)).abs().mean(dim=1, keepdim=True)
    return 1 + MOTION_WEIGHT * motion


def vae_loss(vae, batch: torch.Tensor, temporal_weight: float = 0.0, latent_noise: float = 0.0) -> tuple[torch.Tensor, float]:
    """The motion-weighted reconstruction loss plus KL (and the temporal term), and the plain MSE (for the log)."""
    posterior = vae.encode(batch).latent_dist
    latents = posterior.sample()
    if latent_noise:
        latents = latents + latent_noise * latents.detach().std() * torch.randn_like(latents)
    reconstruction = vae.decode(latents).sample
    squared = (reconstruction - batch) ** 2
    weights = motion_weights(batch)
    loss = (squared * weights).mean() / weights.mean() + KL_WEIGHT * posterior.kl().mean()
    if temporal_weight:
        loss = loss + temporal_weight * (reconstruction.diff(dim=2) - batch.diff(dim=2)).pow(2).mean()
    return loss, squared.mean().item()


def trained_parameters(vae, decoder_only: bool) -> list:
    if decoder_only:
        vae.encoder.requires_grad_(False)
        if vae.quant_conv is not None:
            vae.quant_conv.requires_grad_(False)
    return [p for p in vae.parameters() if p.requires_grad]


def check_settings(args) -> None:
    frames = args.window_frames
    if frames < 5 or (frames - 1) % 4:
        raise TrainerError(f"--window-frames {frames} is not 1 + 4k frames with k at least 1 (the causal VAE's unit); use 9, 17 or 33")
    for name, value in (("--temporal-weight", args.temporal_weight), ("--latent-noise", args.latent_noise)):
        if not 0 <= value <= 100:
            raise TrainerError(f"{name} {value} is out of range; use a number in [0, 100] (0 = off)")


def train_vae(args) -> float:
    refuse_existing(args.out, args.overwrite)
    check_settings(args)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    clips = [read_clip(path, args.window_frames) for path in find_videos(args.clips)]
    if args.decoder_only and not args.init:
        raise TrainerError("--decoder-only fine-tunes an existing VAE's decoder; pass the VAE with --init FILE")
    vae = load_vae(args.init) if args.init else new_vae(args.widths)
    vae.train()
    optimizer = torch.optim.AdamW(trained_parameters(vae, args.decoder_only), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    mse = float("nan")
    for step in range(1, args.steps + 1):
        batch = random_batch(clips, args.batch_size, rng, args.window_frames)
        loss, mse = vae_loss(vae, batch, args.temporal_weight, args.latent_noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == args.steps:
            print(f"vae step {step}/{args.steps}: reconstruction mse {mse:.5f}", flush=True)
    save_vae(vae.eval(), args.out)
    return mse
