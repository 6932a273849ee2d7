"""Pictures to the model's size: a start image (inference) and training clips go through the same resize and
centre crop, so the model sees the same filtering in both.

The filter is the official data pipeline's: bicubic resize so the picture covers the target (torchvision's
`resize` on tensors, which antialiases when it shrinks), then a centre crop; proportions are kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError


def resize_and_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 3, H, W) float frames -> (N, 3, height, width): bicubic (antialiased) to cover, centre crop."""
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    scale = max(height / frames.shape[-2], width / frames.shape[-1])
    size = (max(height, round(frames.shape[-2] * scale)), max(width, round(frames.shape[-1] * scale)))
    resized = F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return resized[..., top:top + height, left:left + width]


def fit_start_image(image, width: int, height: int) -> torch.Tensor:
    """A start image (a file path, a PIL image, or (H, W, 3) values: uint8, or floats in [0, 1] as ComfyUI's IMAGE)
    -> one clean frame (3, 1, height, width) in [-1, 1]."""
    pixels = _as_unit_tensor(image)  # (1, 3, H, W) in [0, 1]
    fitted = resize_and_crop(pixels, height, width).clamp(0, 1)
    return (fitted * 2 - 1)[0][:, None].contiguous()


def _as_unit_tensor(image) -> torch.Tensor:
    if isinstance(image, (str, Path)):
        image = _read(Path(image))
    if not isinstance(image, (np.ndarray, torch.Tensor)):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    # np.array copies: arrays from PIL are read-only, which torch warns about
    values = torch.as_tensor(np.array(image) if isinstance(image, np.ndarray) else image)
    if values.ndim != 3 or values.shape[-1] != 3:
        raise ConfigError(f"a start image must be (height, width, 3) RGB values, got shape {tuple(values.shape)}")
    values = values.float() / 255.0 if values.dtype == torch.uint8 else values.float()
    return values.permute(2, 0, 1)[None]


def _read(path: Path):
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ConfigError(f"start image {str(path)!r} cannot be read ({error}); give a PNG or JPEG file") from error


def load_start_image(path, width: int, height: int) -> torch.Tensor:
    """Image file -> (3, 1, height, width) float32 in [-1, 1]."""
    return fit_start_image(Path(path), width, height)
