"""Start image -> one clean prefix frame. A different size is resized to cover the target and centre-cropped
(bicubic), as the training clips were, so the picture keeps its proportions."""

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError


def load_start_image(path, width: int, height: int) -> torch.Tensor:
    """Image file -> (3, 1, height, width) float32 in [-1, 1]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise ConfigError(f"start image {str(path)!r} cannot be read ({error}); give a PNG or JPEG file") from error
    return image_to_tensor(fit_image(image, width, height))


def fit_image(image, width: int, height: int):
    """Resize to cover width x height (bicubic), then centre-crop: the proportions are kept."""
    from PIL import Image

    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.BICUBIC)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def image_to_tensor(image) -> torch.Tensor:
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return pixels.permute(2, 0, 1)[:, None].contiguous()
