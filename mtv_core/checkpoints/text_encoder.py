"""The T5 text encoder's folder: tokenizer files and a T5EncoderModel (transformers layout, .safetensors weights),
checked as a model folder before anything is allocated; nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelFileError
from ..text import TextEncoder
from .folders import check_model_folder, public_settings

T5_LIMITS = {"d_model": (8, 16384), "d_ff": (8, 65536), "num_layers": (1, 64), "num_heads": (1, 256), "d_kv": (1, 1024),
             "vocab_size": (2, 1_000_000)}
T5_FIX = "pass the folder holding the T5 v1.1 XXL encoder (config.json, .safetensors weights) and its tokenizer files"


def load_text_encoder(folder, device="cpu", dtype=torch.bfloat16) -> TextEncoder:
    """Load tokenizer + T5EncoderModel from a local folder (a flat one, or the hub's text_encoder/ and tokenizer/)."""
    from transformers import AutoTokenizer, T5EncoderModel

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"T5 folder {str(folder)!r} is missing; {T5_FIX}")
    encoder_folder, tokenizer_folder = t5_subfolders(folder)
    check_model_folder(encoder_folder, "T5 encoder", T5_LIMITS, lambda config: _t5_on_meta(config, encoder_folder), T5_FIX)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
        encoder = T5EncoderModel.from_pretrained(encoder_folder, local_files_only=True, use_safetensors=True,
                                                 torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError, TypeError) as error:
        raise ModelFileError(f"could not load T5 from {str(folder)!r}: {str(error)[:300]}. The folder needs the encoder "
                             "weights (.safetensors) and tokenizer files (spiece.model or tokenizer.json)") from None
    return TextEncoder(tokenizer, encoder.to(device).eval())


def t5_subfolders(folder: Path) -> tuple[Path, Path]:
    """(encoder folder, tokenizer folder): `models fetch t5` keeps the hub's text_encoder/ and tokenizer/ apart (both
    hold a config.json); a flat folder holds both."""
    if (folder / "text_encoder").is_dir():
        return folder / "text_encoder", folder / "tokenizer"
    return folder, folder


def _t5_on_meta(values: dict, folder: Path):
    from transformers import T5Config, T5EncoderModel

    try:
        config = T5Config(**public_settings(values))
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{folder}: its config.json is not a T5 config ({str(error)[:200]}); {T5_FIX}") from None
    return T5EncoderModel(config)
