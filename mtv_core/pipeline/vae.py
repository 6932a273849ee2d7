"""The CogVideoX VAE: encoding to scaled latents, decoding in temporal slices and optional spatial tiles (its
files are loaded by `mtv_core.checkpoints.load_vae`).

Latent layout here is the transformer's: (B, T, C, h, w), frames before channels. Pixels are (B, 3, F, H, W)
in [-1, 1]. Decoding runs in temporal slices of 2 latents with the causal-conv cache (diffusers `_decode`,
the same slicing as the official sampler, exact). Spatial tiles are our own: each tile is decoded whole,
placed at its exact pixel position and blended with linear ramps across the overlap, so any size works.
Tiles are NOT bit-exact with a plain decode (the VAE's GroupNorm sees per-tile statistics); use them only
when a plain decode does not fit in memory.
"""

from contextlib import contextmanager

import torch

from .sampling import interruptible

LATENT_SCALE = 0.7  # official MTV / CogVideoX-5B scale_factor
SPATIAL_FACTOR = 8


def latent_channels(vae) -> int:
    return vae.config.latent_channels


@torch.no_grad()
def encode_frames(vae, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pixels (B, 3, F, H, W) in [-1, 1] -> scaled latents (B, T, C, h, w) float32 on the CPU; a posterior sample
    as official."""
    param = next(vae.parameters())
    posterior = vae.encode(frames.to(param.device, param.dtype)).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32)
    latents = posterior.mean.float() + posterior.std.float() * noise.to(posterior.mean.device)
    return (latents * LATENT_SCALE).permute(0, 2, 1, 3, 4).contiguous().cpu()


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, tile_latents: int | None = None, tile_overlap: int = 4,
                   progress=None, interrupt=None) -> torch.Tensor:
    """Scaled latents (B, T, C, h, w) -> pixels (B, 3, F, H, W) in [-1, 1], float32 on the CPU. `progress(done,
    total)` hears of every decoder run (one per temporal slice and tile; (0, total) first); `interrupt()` is asked
    before each, and may raise or return True to stop."""
    param = next(vae.parameters())
    z = (latents / LATENT_SCALE).permute(0, 2, 1, 3, 4).to(param.device, param.dtype)
    tiled = tile_latents is not None and max(z.shape[-2:]) > tile_latents

    def decode(tile):
        return vae.decode(tile).sample.float().cpu()

    runs = decoder_runs(vae, z.shape[2]) * (_tile_count(z, tile_latents, tile_overlap) if tiled else 1)
    with interruptible([vae.decoder], interrupt), _reporting(vae.decoder, runs, progress):
        if not tiled:
            return decode(z).clamp(-1, 1)
        return tiled_decode(decode, z, tile_latents, tile_overlap).clamp(-1, 1)


def decoder_runs(vae, latent_frames: int) -> int:
    """How many times one decode runs the decoder: once per temporal slice, as diffusers' `_decode` slices."""
    return max(latent_frames // vae.num_latent_frames_batch_size, 1)


@contextmanager
def _reporting(decoder, total: int, progress):
    if progress is None:
        yield
        return
    done = 0

    def report(module, args, output):
        nonlocal done
        done += 1
        progress(min(done, total), total)

    progress(0, total)
    handle = decoder.register_forward_hook(report)
    try:
        yield
    finally:
        handle.remove()


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _tile_count(z: torch.Tensor, tile: int, overlap: int) -> int:
    _check_overlap(tile, overlap)
    return len(_tile_starts(z.shape[-2], tile, overlap)) * len(_tile_starts(z.shape[-1], tile, overlap))


def _ramp(length: int, left: int, right: int) -> torch.Tensor:
    """Blend weights for one axis of a tile: linear ramps over the overlapping borders, 1 elsewhere."""
    weight = torch.ones(length)
    if left:
        weight[:left] = torch.arange(1, left + 1) / (left + 1)
    if right:
        weight[length - right:] = torch.arange(right, 0, -1) / (right + 1)
    return weight


def tiled_decode(decode, z: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Decode z (B, C, T, h, w) tile by tile with `decode` and blend; exact for any decoder without spatial context."""
    _check_overlap(tile, overlap)
    h, w = z.shape[-2:]
    rows, cols = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    out = weight_sum = None
    for top in rows:
        for left in cols:
            piece = decode(z[..., top:top + tile, left:left + tile])
            if out is None:
                out = torch.zeros(*piece.shape[:-2], h * SPATIAL_FACTOR, w * SPATIAL_FACTOR)
                weight_sum = torch.zeros(h * SPATIAL_FACTOR, w * SPATIAL_FACTOR)
            weight = _tile_weight(piece.shape[-2:], top, left, rows, cols, tile)
            y, x = top * SPATIAL_FACTOR, left * SPATIAL_FACTOR
            out[..., y:y + piece.shape[-2], x:x + piece.shape[-1]] += piece * weight
            weight_sum[y:y + piece.shape[-2], x:x + piece.shape[-1]] += weight
    return out / weight_sum


def _check_overlap(tile: int, overlap: int) -> None:
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, tile={tile})")


def _overlap_before(start: int, starts: list[int], tile: int) -> int:
    earlier = [s for s in starts if s < start]
    return max(0, earlier[-1] + tile - start) if earlier else 0


def _overlap_after(start: int, starts: list[int], tile: int) -> int:
    later = [s for s in starts if s > start]
    return max(0, start + tile - later[0]) if later else 0


def _tile_weight(pixel_shape, top, left, rows, cols, tile) -> torch.Tensor:
    f = SPATIAL_FACTOR
    vertical = _ramp(pixel_shape[0], _overlap_before(top, rows, tile) * f, _overlap_after(top, rows, tile) * f)
    horizontal = _ramp(pixel_shape[1], _overlap_before(left, cols, tile) * f, _overlap_after(left, cols, tile) * f)
    return vertical[:, None] * horizontal[None, :]
