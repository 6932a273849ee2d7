"""The MTV transformer's model file: written by the converter, the trainer and `save_mtv_model`, loaded straight
into its dtype and device. The file's config is checked (bounded sizes, then a meta-device build whose names and
shapes must equal the file's) before any weight is read."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelFileError
from ..models import MTVTransformer3DModel
from ..models.fp8 import FP8_DTYPE, convert_linears_to_fp8
from ..models.transformer_mtv import LEGACY_CONFIG_KEYS
from ..tensorfile import TensorFile, read_tensor_file
from .files import CONFIG_KEY, save_safetensors
from .folders import build_on_meta, check_config_values

MTV_KIND = "mtv-transformer"
REBUILD = "convert the official checkpoint again with `python -m mtv_core convert`"
# Counts that make one module each: bounded before a model is built (the official model has 42 layers, 48 heads).
CONFIG_LIMITS = {"num_layers": (1, 256), "num_attention_heads": (1, 512), "audio_interaction_layers": (0, 64),
                 "patch_size": (1, 16), "temporal_compression_ratio": (1, 16), "audio_tokens_per_frame": (1, 4096)}


def load_mtv_model(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu", variant: str | None = None):
    """Build an `MTVTransformer3DModel` from a safetensors file written by the converter or trainer. A file with fp8
    weights (`convert --dtype fp8`) loads as the fp8 memory option's FP8Linear blocks, its fp8 weights kept as
    they are whatever `dtype` says."""
    tensors = read_tensor_file(path, "model file")
    config = mtv_file_config(tensors)
    if variant and _variant_family(variant) != _variant_family(config.get("variant", "single")):
        raise ModelFileError(
            f"{path}: this is an MTV {config.get('variant')!r} model but {variant!r} was asked for; "
            f"pick the {variant} checkpoint, or set the variant to {config.get('variant')!r}"
        )
    fp8 = stores_fp8(tensors)
    model, expected = build_on_meta(lambda: _with_fp8_blocks(_build(config, path), fp8))
    tensors.check_matches(expected, REBUILD)
    state = tensors.load(device=device)
    if dtype is not None:
        state = {key: value.to(dtype) if value.is_floating_point() and value.dtype != FP8_DTYPE else value
                 for key, value in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def save_mtv_model(model, path, state: dict | None = None) -> Path:
    """Write a model's weights (or `state`, e.g. with adapters merged in) and its config as an MTV model file."""
    config = {key: value for key, value in dict(model.config).items() if not key.startswith("_")}
    return save_safetensors(path, model.state_dict() if state is None else state, config, MTV_KIND)


def stores_fp8(tensors: TensorFile) -> bool:
    """Whether a model file holds its transformer blocks' Linear weights as fp8 (`convert --dtype fp8`)."""
    return any(name.endswith(".weight_fp8") for name in tensors.tensors)


def _with_fp8_blocks(model, fp8: bool):
    if fp8:
        convert_linears_to_fp8(model.transformer_blocks)
    return model


def mtv_file_config(tensors: TensorFile) -> dict:
    """The checked config of an MTV model file: it must be MTV's, with sizes in range and layer counts that match
    the tensors the file holds."""
    path, names = tensors.path, tensors.tensors
    has_audio = any(key.startswith("audio_encoders.") for key in names)
    if not has_audio and any(key.startswith("transformer_blocks.") for key in names):
        raise ModelFileError(
            f"{path}: this is a plain CogVideoX transformer without MTV's audio modules; "
            "MTV needs the converted MTV checkpoint (`python -m mtv_core convert --input mtv/single/1/mp_rank_00_model_states.pt`)"
        )
    config = tensors.json_metadata(CONFIG_KEY, REBUILD)
    if config is None or not has_audio:
        raise ModelFileError(f"{path}: not an MTV model file (no MTV config in its metadata); {REBUILD}")
    config = {key: value for key, value in config.items() if key not in LEGACY_CONFIG_KEYS}
    check_config_values(config, CONFIG_LIMITS, path, "MTV", REBUILD)
    for key, prefix in (("num_layers", "transformer_blocks."), ("audio_interaction_layers", "audio_interaction_blocks.")):
        found = len({name.split(".")[1] for name in names if name.startswith(prefix)})
        if key in config and config[key] != found:
            raise ModelFileError(f"{path}: its config says {key} = {config[key]} but the file holds {found}; {REBUILD}")
    return config


def _build(config: dict, path):
    try:
        return MTVTransformer3DModel(**config)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: its config does not describe an MTV model ({str(error)[:200]}); {REBUILD}") from None


def _variant_family(variant: str) -> str:
    return "multi" if "multi" in str(variant) else "single"
