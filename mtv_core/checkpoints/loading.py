"""Load a converted MTV transformer straight into its dtype and device (meta-device init: the
weights are never materialised twice)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelFileError
from .files import read_config, read_header

MTV_KIND = "mtv-transformer"


def load_mtv_model(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu", variant: str | None = None):
    """Build an `MTVTransformer3DModel` from a safetensors file written by the converter or trainer."""
    from safetensors import safe_open

    from ..models import MTVTransformer3DModel

    header, _ = read_header(path)
    config = read_config(path)
    _check_is_mtv(path, header, config)
    if variant and _variant_family(variant) != _variant_family(config.get("variant", "single")):
        raise ModelFileError(
            f"{path}: this is an MTV {config.get('variant')!r} model but {variant!r} was asked for; "
            f"pick the {variant} checkpoint, or set the variant to {config.get('variant')!r}"
        )
    with torch.device("meta"):
        model = MTVTransformer3DModel(**config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: does not match its own config: missing {_few(missing)}, unexpected {_few(unexpected)}; "
            "convert the official checkpoint again with `python -m mtv_core convert`"
        )
    state = {}
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        for key in expected:
            tensor = handle.get_tensor(key)
            if tuple(tensor.shape) != tuple(expected[key].shape):
                raise ModelFileError(f"{path}: tensor {key} has shape {tuple(tensor.shape)}, config says {tuple(expected[key].shape)}")
            state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _check_is_mtv(path, header: dict, config: dict | None):
    has_audio = any(key.startswith("audio_encoders.") for key in header)
    if not has_audio and any(key.startswith("transformer_blocks.") for key in header):
        raise ModelFileError(
            f"{path}: this is a plain CogVideoX transformer without MTV's audio modules; "
            "MTV needs the converted MTV checkpoint (`python -m mtv_core convert --input mtv/single/1/mp_rank_00_model_states.pt`)"
        )
    if config is None or not has_audio:
        raise ModelFileError(
            f"{path}: not an MTV model file (no MTV config in its metadata); "
            "convert the official checkpoint with `python -m mtv_core convert`"
        )


def _variant_family(variant: str) -> str:
    return "multi" if "multi" in variant else "single"


def _few(keys: list[str]) -> str:
    return "none" if not keys else ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
