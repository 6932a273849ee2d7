"""Positional embeddings of the MTV transformer."""

from __future__ import annotations

import functools

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from torch import nn


class RotaryPosEmbed3D(nn.Module):
    """CogVideoX's 3-D rotary embedding (cos, sin) of the video tokens of a (frames, rows, cols) token grid."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.head_dim = head_dim

    def forward(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return rotary_embedding(self.head_dim, grid, str(device))


@functools.lru_cache(maxsize=4)
def rotary_embedding(head_dim: int, grid: tuple[int, int, int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The (cos, sin) of `RotaryPosEmbed3D`, computed once per grid and device."""
    frames, rows, cols = grid
    # The official grid starts at 0 on every axis: crop region = the whole grid.
    return get_3d_rotary_pos_embed(head_dim, ((0, 0), (rows, cols)), (rows, cols), frames, device=device)
