"""The attentions of an MTV block: the joint text/video self-attention's processor and the audio cross-attentions'
projections."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import apply_rotary_emb
from torch import nn

from ..attention import DEFAULT_BACKEND, attention, merge_heads, split_heads


class MTVSelfAttnProcessor:
    """CogVideoX's joint text/video attention (QK-LayerNorm, 3D RoPE on video tokens) whose kernel
    is chosen in `mtv_core.attention`."""

    def __init__(self, backend: str = DEFAULT_BACKEND):
        self.backend = backend

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        text_length = encoder_hidden_states.shape[1]
        tokens = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        q, k, v = (split_heads(proj(tokens), attn.heads) for proj in (attn.to_q, attn.to_k, attn.to_v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        if image_rotary_emb is not None:
            q = torch.cat([q[:, :, :text_length], apply_rotary_emb(q[:, :, text_length:], image_rotary_emb)], dim=2)
            k = torch.cat([k[:, :, :text_length], apply_rotary_emb(k[:, :, text_length:], image_rotary_emb)], dim=2)
        out = attn.to_out[1](attn.to_out[0](merge_heads(self.attend(q, k, v, text_length))))
        return out[:, text_length:], out[:, :text_length]

    def attend(self, query, key, value, text_length: int) -> torch.Tensor:
        """Attention over the joint sequence (its first `text_length` tokens are the text), all tensors laid out as
        (batch, heads, tokens, head_dim)."""
        return attention(query, key, value, self.backend)


class AudioCrossAttention(nn.Module):
    """Video tokens (queries) attend to one stream's audio tokens. QK-norm and RoPE come from the
    block's self-attention (the official model reuses them), so this module holds only projections."""

    def __init__(self, dim: int, audio_dim: int):
        super().__init__()
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(audio_dim, dim)
        self.to_v = nn.Linear(audio_dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
