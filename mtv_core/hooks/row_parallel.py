"""Ulysses context parallelism for the MTV transformer, split by rows inside every latent frame, applied from outside
the model: hooks follow the model's `_row_parallel_plan`, and the joint self-attention's processor is swapped for one
that attends over every process's tokens.

Each process holds the same rows of every latent frame (rows padded up to a multiple of the process count), so the
per-frame parts of a block (modulation, the audio cross-attention of a frame's tokens to that frame's audio, music)
stay local. Only the joint self-attention needs every token: diffusers' attention dispatch exchanges heads for
tokens (all-to-all), attends over the whole sequence and exchanges back. The text tokens are replicated in every
process; in the exchanged sequence their copies from the other processes and the padding rows are masked out of the
keys, so the result is the single-process attention. After the last block the rows are gathered.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

from ..errors import ConfigError
from ..models.attention_processor import MTVSelfAttnProcessor

HOOK_NAME = "mtv_row_parallel"
OUTPUT = "output"


class RowParallel:
    """One process's share of the rows; `parallel_config` is diffusers' ParallelConfig with the Ulysses mesh. `grid`
    is the token grid (frames, rows, cols) of the forward under way, recorded by the hooks."""

    def __init__(self, parallel_config, rank: int, size: int, group):
        self.parallel_config = parallel_config
        self.rank, self.size, self.group = rank, size, group
        self.grid: tuple[int, int, int] | None = None
        self._masks: dict = {}

    def local_rows(self, rows: int) -> int:
        return math.ceil(rows / self.size)

    def split(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., frames * rows * cols, D) -> this process's rows of every frame (..., frames * local_rows * cols, D)."""
        frames, rows, cols = self._current_grid()
        share = self.local_rows(rows)
        lead = tokens.shape[:-2]
        laid_out = tokens.reshape(*lead, frames, rows, cols, tokens.shape[-1])
        padded = torch.nn.functional.pad(laid_out, (0, 0, 0, 0, 0, share * self.size - rows))
        mine = padded[..., :, self.rank * share:(self.rank + 1) * share, :, :]
        return mine.reshape(*lead, frames * share * cols, tokens.shape[-1])

    def gather(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of `split`: (B, frames * local_rows * cols, D) from every process -> (B, frames * rows * cols, D)."""
        frames, rows, cols = self._current_grid()
        share = self.local_rows(rows)
        parts = [torch.empty_like(tokens) for _ in range(self.size)]
        dist.all_gather(parts, tokens.contiguous(), group=self.group)
        batch, dim = tokens.shape[0], tokens.shape[-1]
        stacked = torch.stack([part.reshape(batch, frames, share, cols, dim) for part in parts], dim=2)
        return stacked.flatten(2, 3)[:, :, :rows].reshape(batch, frames * rows * cols, dim)

    def attention(self, query, key, value, text_length: int) -> torch.Tensor:
        """Joint attention over (B, heads, local tokens, head_dim) tensors, text first; returns the same layout."""
        mask = self.key_mask(query.shape[2], text_length, query.device)
        query, key, value = (x.transpose(1, 2) for x in (query, key, value))
        out = dispatch_attention_fn(query, key, value, attn_mask=mask, backend=AttentionBackendName.NATIVE,
                                    parallel_config=self.parallel_config)
        return out.transpose(1, 2)

    def key_mask(self, local_length: int, text_length: int, device) -> torch.Tensor:
        """(1, 1, 1, size * local_length) bool over the exchanged sequence (every process's tokens in rank order):
        keep the text of rank 0 only, and no padding row."""
        grid = self._current_grid()
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

    def _current_grid(self) -> tuple[int, int, int]:
        if self.grid is None:
            raise ConfigError("row parallelism reads the token grid from the model's rotary embedding, and this "
                              "model has none; run it in one process (or with guidance branches only)")
        return self.grid


class UlyssesAttnProcessor(MTVSelfAttnProcessor):
    """The joint self-attention of one process's rows over every process's tokens."""

    def __init__(self, rows: RowParallel, backend: str):
        super().__init__(backend)
        self.rows = rows

    def attend(self, query, key, value, text_length: int) -> torch.Tensor:
        return self.rows.attention(query, key, value, text_length)


class RowParallelHook(ModelHook):
    """One module's part of the plan: record the token grid from its `grid` input, split one input (by name) or its
    output into this process's rows, gather its output's rows."""

    def __init__(self, rows: RowParallel, records_grid: bool = False, split: str | None = None, gather: bool = False):
        super().__init__()
        self.rows, self.records_grid, self.split, self.gather = rows, records_grid, split, gather

    def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        # the class's forward: an instance's may have been replaced (compiled blocks) by one taking (*args, **kwargs)
        self.signature = inspect.signature(type(module).forward)
        return module

    def pre_forward(self, module, *args, **kwargs):
        splits_input = self.split not in (None, OUTPUT)
        if not (self.records_grid or splits_input):
            return args, kwargs
        bound = self.signature.bind(module, *args, **kwargs)
        if self.records_grid:
            self.rows.grid = tuple(bound.arguments["grid"])
        if splits_input:
            bound.arguments[self.split] = self.rows.split(bound.arguments[self.split])
        return bound.args[1:], bound.kwargs

    def post_forward(self, module, output):
        if self.split == OUTPUT:
            output = _each(self.rows.split, output)
        if self.gather:
            output = _each(self.rows.gather, output)
        return output


def split_rows(model: torch.nn.Module, rows: RowParallel | None) -> None:
    """Run `model` as one of several processes that each hold `rows` of every latent frame, as its
    `_row_parallel_plan` declares (None: alone again)."""
    HookRegistry.check_if_exists_or_initialize(model).remove_hook(HOOK_NAME, recurse=True)
    for module in model.modules():
        if isinstance(getattr(module, "processor", None), UlyssesAttnProcessor):
            module.set_processor(MTVSelfAttnProcessor(module.processor.backend))
    if rows is None:
        return
    plan = model._row_parallel_plan
    for name in sorted({plan["grid"], *plan["split"], *plan["gather"]}):
        hook = RowParallelHook(rows, name == plan["grid"], plan["split"].get(name), name in plan["gather"])
        HookRegistry.check_if_exists_or_initialize(model.get_submodule(name)).register_hook(hook, HOOK_NAME)
    for module in model.modules():
        if isinstance(getattr(module, "processor", None), MTVSelfAttnProcessor):
            module.set_processor(UlyssesAttnProcessor(rows, module.processor.backend))


def _each(change, value):
    """`change` applied to a tensor, or to each tensor of a tuple."""
    return tuple(change(part) for part in value) if isinstance(value, tuple) else change(value)
