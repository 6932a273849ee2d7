"""T5 v1.1 XXL text embeddings as the official sampler makes them: 226 tokens, padded, no attention mask.

The unconditional branch uses a zero embedding (not T5("")), as the official guidance does.
"""

import warnings
from pathlib import Path

import torch

from ..errors import ModelFileError

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

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, truncation=False)["input_ids"])

    def warn_if_too_long(self, prompt: str) -> None:
        count = self.count_tokens(prompt)
        if count > self.max_tokens:
            warnings.warn(
                f"the prompt has {count} T5 tokens but the model reads only {self.max_tokens}; the end is cut off "
                f"(it begins {prompt[:60]!r}). Shorten the scene description to keep all of it.",
                PromptTruncatedWarning, stacklevel=3)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(N, 226, d_model) float32 embeddings of the prompts, on the CPU."""
        for prompt in prompts:
            self.warn_if_too_long(prompt)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.max_tokens, truncation=True,
                                return_tensors="pt")
        device = next(self.encoder.parameters()).device
        hidden = self.encoder(input_ids=tokens.input_ids.to(device)).last_hidden_state
        return hidden.float().cpu()


def load_text_encoder(folder, device="cpu", dtype=torch.bfloat16) -> TextEncoder:
    """Load tokenizer + T5EncoderModel from a local folder (transformers layout); never downloads."""
    from transformers import AutoTokenizer, T5EncoderModel

    folder = Path(folder)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ModelFileError(f"T5 folder {str(folder)!r} is missing or has no config.json; pass the folder holding "
                             "the T5 v1.1 XXL encoder (config.json, weights) and its tokenizer files")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        encoder = T5EncoderModel.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"could not load T5 from {str(folder)!r}: {error}. The folder needs the encoder weights "
                             "and tokenizer files (spiece.model or tokenizer.json)") from error
    return TextEncoder(tokenizer, encoder.to(device).eval())


def zero_text_embedding(like: torch.Tensor) -> torch.Tensor:
    """The official unconditional text input: all zeros."""
    return torch.zeros_like(like)
