"""The MTV audio modules that sit before the DiT: per-stream projection and interaction blocks."""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from torch import nn

from ..attention import DEFAULT_BACKEND, attention, merge_heads, split_heads
from ..spec import EFFECTS, SPEECH


class AudioProjection(nn.Module):
    """Windowed wav2vec2 features per video frame -> `tokens` audio tokens per latent frame.

    Three linear layers per frame, then one stride-2 temporal convolution applied twice (the first
    frame kept apart each time, as the causal VAE keeps its first frame), then LayerNorm:
    49 frames -> 25 -> 13 latent frames; latent k >= 1 gathers frames 4k-3 .. 4k.
    """

    def __init__(self, feature_dim: int, intermediate_dim: int, dim: int, tokens: int):
        super().__init__()
        self.dim, self.tokens = dim, tokens
        self.proj1 = nn.Linear(feature_dim, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, tokens * dim)
        self.temporal_conv = nn.Conv1d(tokens * dim, tokens * dim, kernel_size=2, stride=2)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, frames, feature_dim) -> (B, latent_frames, tokens, dim)."""
        x = torch.relu(self.proj1(features.flatten(2)))
        x = torch.relu(self.proj2(x))
        x = self.proj3(x).transpose(1, 2)  # (B, tokens*dim, frames)
        for _ in range(2):
            x = self._downsample_time(x)
        x = x.transpose(1, 2).unflatten(2, (self.tokens, self.dim))
        return self.norm_out(x)

    def _downsample_time(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 == 0:
            return self._pairwise_conv(x)
        first, rest = x[..., :1], x[..., 1:]
        if rest.shape[-1] == 0:
            return first
        return torch.cat([first, self._pairwise_conv(rest)], dim=-1)

    def _pairwise_conv(self, x: torch.Tensor) -> torch.Tensor:
        """temporal_conv (kernel 2, stride 2) of (B, C, T), T even, as one matmul over pairs of frames: the same sums,
        without the copy of the (C, C, 2) weight that a CPU convolution makes (1.2 G values at the official width)."""
        conv = self.temporal_conv
        pairs = x.unflatten(-1, (-1, 2)).transpose(1, 2).flatten(2)  # (B, T/2, C*2): channel, then kernel tap
        return nn.functional.linear(pairs, conv.weight.flatten(1), conv.bias).transpose(1, 2)


class AudioSelfAttention(nn.Module):
    """Plain multi-head self-attention (no mask, no RoPE, no QK-norm) with fused-free projections."""

    def __init__(self, dim: int, head_dim: int):
        super().__init__()
        self.heads = dim // head_dim
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.backend = DEFAULT_BACKEND

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.to_q, self.to_k, self.to_v))
        return self.to_out[0](merge_heads(attention(q, k, v, self.backend)))


class AudioInteractionBlock(nn.Module):
    """The paper's interval interaction: speech, second speaker and effects tokens of one latent frame
    attend to each other, with timestep-conditioned AdaLN (12 chunks: 6 for speech, 6 for effects;
    the second speaker shares the speech LN and modulation).
    """

    def __init__(self, dim: int, time_embed_dim: int, head_dim: int):
        super().__init__()
        self.norm_speech = nn.LayerNorm(dim)
        self.norm_effects = nn.LayerNorm(dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, 12 * dim))
        self.attn = AudioSelfAttention(dim, head_dim)
        self.ff = FeedForward(dim, activation_fn="gelu-approximate")

    def forward(self, streams: dict[str, torch.Tensor], temb: torch.Tensor) -> dict[str, torch.Tensor]:
        """streams: name -> (B*T, tokens, dim) in interaction order; temb: (B*T, time_embed_dim)."""
        chunks = self.adaln(temb)[:, None].chunk(12, dim=-1)
        params = {SPEECH: chunks[:6], EFFECTS: chunks[6:]}
        norms = {SPEECH: self.norm_speech, EFFECTS: self.norm_effects}
        groups = {name: EFFECTS if name == EFFECTS else SPEECH for name in streams}  # speech2 shares speech's

        def modulated(name, norm, which):
            shift, scale = params[groups[name]][which], params[groups[name]][which + 1]
            return norm(streams[name]) * (1 + scale) + shift

        names = list(streams)
        sizes = [streams[name].shape[1] for name in names]
        attn_in = torch.cat([modulated(n, norms[groups[n]], 0) for n in names], dim=1)
        attn_out = dict(zip(names, self.attn(attn_in).split(sizes, dim=1)))
        streams = {n: streams[n] + params[groups[n]][2] * attn_out[n] for n in names}

        ff_in = torch.cat([modulated(n, self.norm_ff, 3) for n in names], dim=1)
        ff_out = dict(zip(names, self.ff(ff_in).split(sizes, dim=1)))
        return {n: streams[n] + params[groups[n]][5] * ff_out[n] for n in names}
