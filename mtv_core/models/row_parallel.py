"""Ulysses context parallelism for the MTV transformer, split by rows inside every latent frame.

Each process holds the same rows of every latent frame (rows padded up to a multiple of the process count), so the
per-frame parts of a block (modulation, the audio cross-attention of a frame's tokens to that frame's audio, music)
stay local. Only the joint self-attention needs every token: diffusers' attention dispatch exchanges heads for
tokens (all-to-all), attends over the whole sequence and exchanges back. The 226 text tokens are replicated in every
process; in the exchanged sequence their copies from the other processes and the padding rows are masked out of the
keys, so the result is the single-process attention. After the last block the rows are gathered.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn


class RowParallel:
    """One process's share of the rows; `parallel_config` is diffusers' ParallelConfig with the Ulysses mesh."""

    def __init__(self, parallel_config, rank: int, size: int, group):
        self.parallel_config = parallel_config
        self.rank, self.size, self.group = rank, size, group
        self._masks: dict = {}

    def local_rows(self, rows: int) -> int:
        return math.ceil(rows / self.size)

    def split(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(..., frames * rows * cols, D) -> this process's rows of every frame (..., frames * local_rows * cols, D)."""
        frames, rows, cols = grid
        share = self.local_rows(rows)
        lead = tokens.shape[:-2]
        laid_out = tokens.reshape(*lead, frames, rows, cols, tokens.shape[-1])
        padded = torch.nn.functional.pad(laid_out, (0, 0, 0, 0, 0, share * self.size - rows))
        mine = padded[..., :, self.rank * share:(self.rank + 1) * share, :, :]
        return mine.reshape(*lead, frames * share * cols, tokens.shape[-1])

    def split_rope(self, rope, grid):
        return None if rope is None else tuple(self.split(part, grid) for part in rope)

    def gather(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Inverse of `split`: (B, frames * local_rows * cols, D) from every process -> (B, frames * rows * cols, D)."""
        frames, rows, cols = grid
        share = self.local_rows(rows)
        parts = [torch.empty_like(tokens) for _ in range(self.size)]
        dist.all_gather(parts, tokens.contiguous(), group=self.group)
        batch, dim = tokens.shape[0], tokens.shape[-1]
        stacked = torch.stack([part.reshape(batch, frames, share, cols, dim) for part in parts], dim=2)
        return stacked.flatten(2, 3)[:, :, :rows].reshape(batch, frames * rows * cols, dim)

    def attention(self, query, key, value, key_mask: torch.Tensor) -> torch.Tensor:
        """Joint attention over (B, heads, local tokens, head_dim) tensors, text first; returns the same layout.
        `key_mask` from `key_mask`."""
        query, key, value = (x.transpose(1, 2) for x in (query, key, value))
        out = dispatch_attention_fn(query, key, value, attn_mask=key_mask, backend=AttentionBackendName.NATIVE,
                                    parallel_config=self.parallel_config)
        return out.transpose(1, 2)

    def key_mask(self, local_length: int, text_length: int, grid, device) -> torch.Tensor:
        """(1, 1, 1, size * local_length) bool over the exchanged sequence (every process's tokens in rank order):
        keep the text of rank 0 only, and no padding row."""
        key = (local_length, text_length, grid, str(device))
        if key not in self._masks:
            frames, rows, cols = grid
            share = self.local_rows(rows)
            keep = torch.ones(self.size, local_length, dtype=torch.bool)
            keep[1:, :text_length] = False
            for rank in range(self.size):
                video = keep[rank, text_length:].view(frames, share, cols)
                padding_from = max(0, min(share, rows - rank * share))
                video[:, padding_from:] = False
            self._masks[key] = keep.reshape(1, 1, 1, -1).to(device)
        return self._masks[key]
