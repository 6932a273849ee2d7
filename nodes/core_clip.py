"""A core CLIP (Load CLIP, type sd3, holding t5xxl: the file Flux and SD3 users already have) as MTV's text encoder."""

from __future__ import annotations

import torch

from mtv_core.errors import ConfigError
from mtv_core.text import official_token_ids

CORE_T5_KEY = "t5xxl"  # the token list core's T5-XXL reads, in every CLIP type that holds one


def encode_with_core_clip(clip, prompts):
    """(N, 226, 4096) embeddings from a core CLIP holding T5 v1.1 XXL (Load CLIP, type sd3), fed exactly as the
    official pipeline feeds T5: the Hugging Face tokenizer's 226 ids (prompt, </s>, pad id 0), no attention mask.
    Core's own tokenize() would pad to 77 and read '(word:1.2)' as a weight, so the ids are made with the CLIP's T5
    tokenizer as our T5 path makes them, and only the encoding is core's."""
    ids = official_token_ids(_core_t5_tokenizer(clip), prompts)
    return torch.cat([_encode_core_ids(clip, row) for row in ids.tolist()])


def _core_t5_tokenizer(clip):
    """The Hugging Face tokenizer of the CLIP's T5-XXL part (SD3, Flux, Mochi... name it 't5xxl')."""
    tokenizer = getattr(clip, "tokenizer", None)
    for part in (vars(tokenizer).values() if hasattr(tokenizer, "__dict__") else ()):
        if getattr(part, "embedding_key", None) == CORE_T5_KEY and hasattr(part, "tokenizer"):
            return part.tokenizer
    raise ConfigError(f"this CLIP holds no T5-XXL text encoder ({type(clip).__name__}); load t5xxl_fp16.safetensors "
                      "(or t5xxl_fp8_e4m3fn.safetensors) from models/text_encoders with Load CLIP, type sd3")


def _encode_core_ids(clip, ids: list[int]):
    other_parts = {key: [] for key in clip.tokenize("")}  # CLIP-L/G of an SD3 or Flux CLIP: nothing to encode
    tokens = {**other_parts, CORE_T5_KEY: [[(token, 1.0) for token in ids]]}
    out = clip.encode_from_tokens(tokens, return_dict=True)
    if "attention_mask" in out:
        raise ConfigError("this CLIP masks the padding tokens (a T5 loaded as mochi, ltxv, pixart...), which MTV's "
                          "T5 never did; load the t5xxl file with Load CLIP, type sd3")
    cond = out["cond"]
    if tuple(cond.shape[:2]) != (1, len(ids)):
        raise ConfigError(f"this CLIP gave text embeddings of shape {tuple(cond.shape)} for {len(ids)} tokens; "
                          "load the t5xxl file alone with Load CLIP, type sd3")
    return cond.float().cpu()
