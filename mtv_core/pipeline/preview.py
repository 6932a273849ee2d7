"""Live previews while sampling: each VAE gets a latent -> RGB projection (a C x 3 matrix and a bias), applied to the
sampler's x0 estimate at latent resolution. A few multiply-adds per latent pixel: no decoder runs.

Factor files are JSON: {"name", "source", "factors": C rows of [r, g, b], "bias": [r, g, b], "vae_signature"}. The
projection maps scaled latents (what the sampler holds: VAE latents x 0.7) to colours in [-1, 1]. Fitted factors
record the VAE they were fitted to as a signature (a few of its decoder weights), so they are used for that VAE only;
`tools/fit_preview_factors.py` fits them for any CogVideoX VAE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import demo
from ..errors import ModelFileError

OFFICIAL_FACTORS = Path(__file__).with_name("cogvideox5b_preview.json")
SIGNATURE_TENSOR = "decoder.conv_in.conv.weight"
SIGNATURE_VALUES = 8
LONGEST_SIDE = 512  # the strip is upscaled (nearest) to at most this many pixels on its long side
MAX_UPSCALE = 8
GAP = 1  # latent pixels of black between the frames of the strip


@dataclass(frozen=True)
class LatentPreview:
    name: str
    factors: torch.Tensor  # (C, 3)
    bias: torch.Tensor  # (3,)
    signature: tuple = ()  # the first decoder weights of the VAE fitted to; () = any VAE with C latent channels

    @classmethod
    def load(cls, path) -> LatentPreview:
        try:
            data = json.loads(Path(path).read_text())
            factors = torch.tensor(data["factors"], dtype=torch.float32)
            bias = torch.tensor(data.get("bias", [0.0, 0.0, 0.0]), dtype=torch.float32)
            signature = tuple(float(v) for v in (data.get("vae_signature") or {}).get("values", ()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelFileError(f"preview factors {str(path)!r} cannot be read ({error}); write them again with "
                                 "`python tools/fit_preview_factors.py`") from None
        if factors.dim() != 2 or factors.shape[1] != 3 or bias.shape != (3,):
            raise ModelFileError(f"preview factors {str(path)!r} hold a {tuple(factors.shape)} matrix and a "
                                 f"{tuple(bias.shape)} bias; expected (channels, 3) and (3,). Fit them again with "
                                 "`python tools/fit_preview_factors.py`")
        return cls(str(data.get("name", Path(path).stem)), factors, bias, signature)

    @property
    def channels(self) -> int:
        return self.factors.shape[0]

    def fits(self, vae) -> bool:
        """Whether these factors belong to `vae`: its channel count, and its decoder weights when they were fitted."""
        if vae.config.latent_channels != self.channels:
            return False
        if not self.signature:
            return True
        return torch.allclose(vae_signature(vae), torch.tensor(self.signature), rtol=1e-2, atol=1e-4)

    def rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (..., C, h, w) -> colours (..., h, w, 3) in about [-1, 1] (not clamped)."""
        channels_last = latents.detach().to("cpu", torch.float32).movedim(-3, -1)
        return channels_last @ self.factors + self.bias

    def image(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (B, T, C, h, w) -> (H, W, 3) uint8: the first, middle and last latent frames of the first clip
        side by side, enlarged with nearest neighbours."""
        frames = latents[0]
        picked = sorted({0, frames.shape[0] // 2, frames.shape[0] - 1})
        colours = self.rgb(frames[picked])  # (k, h, w, 3)
        gap = torch.full((colours.shape[1], GAP, 3), -1.0)
        strip = torch.cat([part for colour in colours for part in (colour, gap)][:-1], dim=1)
        scale = max(1, min(MAX_UPSCALE, LONGEST_SIDE // max(strip.shape[:2])))
        strip = strip.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        return ((strip.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def colours_at_latent_resolution(pixels: torch.Tensor, spatial: int = 8, temporal: int = 4) -> torch.Tensor:
    """Decoded pixels (3, F, H, W) in [-1, 1] -> the colour each latent pixel stands for, (T, h, w, 3): the mean of
    its 8x8 pixels and of its frames, grouped as the VAE's causal encoder groups them (latent 0 <- frame 0,
    latent k <- frames 4k-3..4k)."""
    frames = torch.nn.functional.avg_pool2d(pixels.movedim(1, 0).float(), spatial)  # (F, 3, h, w)
    later = frames[1:].unflatten(0, (-1, temporal)).mean(1)
    return torch.cat([frames[:1], later]).permute(0, 2, 3, 1)


def level_error(predicted: torch.Tensor, colours: torch.Tensor) -> float:
    """Mean absolute difference in 0..255 levels of two colour tensors in [-1, 1] (the prediction clamped)."""
    return (predicted.clamp(-1, 1) - colours).abs().mean().item() * 127.5


def vae_signature(vae) -> torch.Tensor:
    """A few decoder weights that tell one VAE's latent space from another's (any device or dtype)."""
    weights = vae.get_parameter(SIGNATURE_TENSOR).detach().flatten()[:SIGNATURE_VALUES]
    return weights.to("cpu", torch.float32)


def known_factors() -> list[Path]:
    """The fitted factor files shipped with the pack (the demo VAE's)."""
    return [demo.VAE_PREVIEW]


def preview_for_vae(vae) -> LatentPreview | None:
    """The projection for `vae`: factors fitted to it if shipped, else the official CogVideoX-5B ones for a
    16-channel VAE, else None (no preview)."""
    for path in known_factors():
        if path.is_file() and (fitted := LatentPreview.load(path)).fits(vae):
            return fitted
    official = LatentPreview.load(OFFICIAL_FACTORS)
    return official if official.fits(vae) else None
