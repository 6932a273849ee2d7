"""T5 v1.1 XXL text embeddings as the official sampler makes them: 226 tokens, padded, no attention mask.

The unconditional branch uses a zero embedding (not T5("")), as the official guidance does.
"""

import warnings
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..tensorfile import build_on_meta, check_config_values, check_folder_weights, read_config_json, weight_files

MAX_TEXT_TOKENS = 226


class PromptTruncatedWarning(UserWarning):
    """A prompt longer than the model's 226 text tokens: its end is cut off."""


class TextEncoder:
    """A tokenizer and a T5 encoder loaded from one local folder."""

    def __init__(self, tokenizer, encoder, max_tokens: int = MAX_TEXT_TOKENS):
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_tokens = max_tokens

    @property
    def embed_dim(self) -> int:
        return self.encoder.config.d_model

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(N, 226, d_model) float32 embeddings of the prompts, on the CPU."""
        ids = official_token_ids(self.tokenizer, prompts, self.max_tokens)
        device = next(self.encoder.parameters()).device
        hidden = self.encoder(input_ids=ids.to(device)).last_hidden_state
        return hidden.float().cpu()


def official_token_ids(tokenizer, prompts: list[str], max_tokens: int = MAX_TEXT_TOKENS) -> torch.Tensor:
    """(N, max_tokens) token ids as the official pipeline feeds T5: the prompt's tokens, </s>, then the pad id (0)
    up to 226; a longer prompt is cut to fit (with a PromptTruncatedWarning). No attention mask goes with them."""
    for prompt in prompts:
        _warn_if_too_long(tokenizer, prompt, max_tokens)
    return tokenizer(prompts, padding="max_length", max_length=max_tokens, truncation=True,
                     return_tensors="pt").input_ids


def _warn_if_too_long(tokenizer, prompt: str, max_tokens: int) -> None:
    count = len(tokenizer(prompt, truncation=False)["input_ids"])
    if count > max_tokens:
        warnings.warn(
            f"the prompt has {count} T5 tokens but the model reads only {max_tokens}; the end is cut off "
            f"(it begins {prompt[:60]!r}). Shorten the scene description to keep all of it.",
            PromptTruncatedWarning, stacklevel=4)


T5_LIMITS = {"d_model": (8, 16384), "d_ff": (8, 65536), "num_layers": (1, 64), "num_heads": (1, 256), "d_kv": (1, 1024),
             "vocab_size": (2, 1_000_000)}
T5_FIX = "pass the folder holding the T5 v1.1 XXL encoder (config.json, .safetensors weights) and its tokenizer files"


def load_text_encoder(folder, device="cpu", dtype=torch.bfloat16) -> TextEncoder:
    """Load tokenizer + T5EncoderModel from a local folder (transformers layout); never downloads. The config is
    checked against the weights (a meta-device build) before anything is allocated."""
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"T5 folder {str(folder)!r} is missing; {T5_FIX}")
    encoder_folder, tokenizer_folder = t5_subfolders(folder)
    values = check_config_values(read_config_json(encoder_folder / "config.json", "T5"), T5_LIMITS, encoder_folder,
                                 "T5", T5_FIX)
    files = weight_files(encoder_folder, "T5")
    try:
        config = T5Config(**{k: v for k, v in values.items() if not k.startswith("_")})
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{encoder_folder}: its config.json is not a T5 config ({str(error)[:200]}); "
                             f"{T5_FIX}") from None
    model, _ = build_on_meta(lambda: T5EncoderModel(config))
    check_folder_weights(encoder_folder, model, files, "T5 encoder", T5_FIX)
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


def zero_text_embedding(like: torch.Tensor) -> torch.Tensor:
    """The official unconditional text input: all zeros."""
    return torch.zeros_like(like)
