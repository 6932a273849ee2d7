"""T5 v1.1 XXL text embeddings as the official sampler makes them: 226 tokens, padded, no attention mask.

The unconditional branch uses a zero embedding (not T5("")), as the official guidance does.
"""

import warnings

import torch

MAX_TEXT_TOKENS = 226


class PromptTruncatedWarning(UserWarning):
    """A prompt longer than the model's 226 text tokens: its end is cut off."""


class TextEncoder:
    """A tokenizer and a T5 encoder (`mtv_core.checkpoints.load_text_encoder` loads them from one local folder)."""

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


def zero_text_embedding(like: torch.Tensor) -> torch.Tensor:
    """The official unconditional text input: all zeros."""
    return torch.zeros_like(like)
