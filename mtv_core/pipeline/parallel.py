"""One video across several processes (`torchrun --nproc-per-node N -m mtv_core generate ...`).

The N processes form groups: the guidance branches of a step are shared out between `branches` groups, and inside
a group `ulysses` processes each hold some rows of every latent frame (hooks/row_parallel.py). Rank 0 does
everything else (stems, features, text, the clean prefix, decoding, the mp4, the segment store); for each segment it
sends the denoising inputs to the others, every process runs the same sampler steps, and the guided prediction is
summed across the branch groups, so all processes hold the same latents at every step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError
from ..hooks.row_parallel import RowParallel, split_rows


@dataclass(frozen=True)
class ParallelPlan:
    ulysses: int = 1
    branches: int = 1

    @property
    def size(self) -> int:
        return self.ulysses * self.branches

    def __str__(self) -> str:
        return f"ulysses={self.ulysses},branches={self.branches}"


def launched_processes() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a whole number; start with torchrun") from None


def plan_parallel(text: str, processes: int, heads: int, branch_count: int, cache=None) -> ParallelPlan:
    """The split for `processes` processes: "auto", or "ulysses=U,branches=B" (a size left out follows from the
    process count). Checked against the model's heads, the guidance branches per step and the step cache."""
    if text.strip().lower() == "auto":
        plan = _auto_plan(processes, heads, branch_count)
    else:
        plan = _parse(text, processes)
    _check(plan, text, processes, heads, branch_count)
    if plan.ulysses > 1 and cache is not None and cache.name == "fbc":
        raise ConfigError(f"step cache {cache} cannot be used with the parallel plan {plan}: first-block caching "
                          "decides per process whether to skip, and processes that split the rows must decide "
                          "together; use the taylorseer step cache, or a plan of branches only")
    return plan


def _auto_plan(processes: int, heads: int, branch_count: int) -> ParallelPlan:
    """As many branch groups as divide the processes (branches need no exchange inside a step), the rest Ulysses."""
    for branches in sorted((b for b in range(1, processes + 1) if processes % b == 0), reverse=True):
        ulysses = processes // branches
        if branches <= branch_count and heads % ulysses == 0:
            return ParallelPlan(ulysses, branches)
    raise ConfigError(f"{processes} processes cannot share this model: its {heads} attention heads are not divisible "
                      f"by any Ulysses size that fits; start a number of processes that divides {heads} "
                      f"(times up to {branch_count} guidance branches)")


def _parse(text: str, processes: int) -> ParallelPlan:
    sizes = {}
    for part in filter(None, (p.strip() for p in text.lower().split(","))):
        match = re.fullmatch(r"(ulysses|branches)=(\d{1,4})", part)
        if not match or match[1] in sizes or int(match[2]) < 1:
            raise ConfigError(f"parallel plan {text!r} is not understood; write auto, or ulysses=U,branches=B with "
                              "whole numbers >= 1 whose product is the number of processes (e.g. ulysses=2,branches=2)")
        sizes[match[1]] = int(match[2])
    if not sizes:
        raise ConfigError(f"parallel plan {text!r} is empty; write auto or ulysses=U,branches=B")
    ulysses = sizes.get("ulysses") or max(1, processes // sizes["branches"])
    branches = sizes.get("branches") or max(1, processes // ulysses)
    return ParallelPlan(ulysses, branches)


def _check(plan: ParallelPlan, text: str, processes: int, heads: int, branch_count: int) -> None:
    if plan.size != processes:
        start = (f"start {plan.size} processes with torchrun --nproc-per-node {plan.size}"
                 if processes == 1 else f"choose sizes whose product is {processes}")
        raise ConfigError(f"parallel plan {text!r} needs {plan.size} processes ({plan}) but {processes} "
                          f"{'is' if processes == 1 else 'are'} running; {start}")
    if heads % plan.ulysses:
        divisors = [d for d in range(1, heads + 1) if heads % d == 0]
        raise ConfigError(f"parallel plan {text!r}: ulysses={plan.ulysses} does not divide the model's {heads} "
                          f"attention heads; use one of {divisors}")
    if plan.branches > branch_count:
        raise ConfigError(f"parallel plan {text!r}: branches={plan.branches} but these guidance scales need "
                          f"{branch_count} branch{'es' if branch_count > 1 else ''} per step; use branches <= {branch_count}")


@dataclass
class DenoiseJob:
    """What every process needs to denoise one segment (rank 0 makes it; the tensors are on the CPU)."""

    text: torch.Tensor
    tokens: dict
    null_tokens: dict
    clean_mask: torch.Tensor
    noise: torch.Tensor
    prefix: torch.Tensor | None
    generator_state: torch.Tensor
    silent: frozenset = frozenset()  # streams encoded from silence (no push of their own, see guidance.py)
    pauses: torch.Tensor | None = None  # (T,) bool: latent frames where nobody speaks (see pauses.py)

    def to_cpu(self) -> "DenoiseJob":
        move = lambda x: None if x is None else x.cpu()  # noqa: E731
        return DenoiseJob(move(self.text), {k: move(v) for k, v in self.tokens.items()},
                          {k: move(v) for k, v in self.null_tokens.items()}, move(self.clean_mask), move(self.noise),
                          move(self.prefix), self.generator_state, self.silent, move(self.pauses))


class ParallelRun:
    """This process's place among the others: its device, its branch group and its share of the rows."""

    def __init__(self, plan: ParallelPlan, device: str):
        from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig
        from torch.distributed.device_mesh import init_device_mesh

        self.plan = plan
        self.rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
        kind = torch.device(device).type
        self.device = f"cuda:{local_rank}" if kind == "cuda" else device
        mesh = init_device_mesh(kind, (plan.branches, 1, plan.ulysses), mesh_dim_names=("branch", "ring", "ulysses"))
        self.branch_index = mesh["branch"].get_local_rank()
        self.branch_group = mesh["branch"].get_group()
        # CPU messages from rank 0, whatever the device; the others wait while rank 0 demixes and encodes the audio
        self.control = dist.new_group(backend="gloo", timeout=timedelta(hours=24))
        self.row_parallel = None
        if plan.ulysses > 1:
            config = ParallelConfig(context_parallel_config=ContextParallelConfig(ulysses_degree=plan.ulysses))
            config.setup(self.rank, plan.size, torch.device(self.device), mesh=mesh["ring", "ulysses"])
            ulysses = mesh["ulysses"]
            self.row_parallel = RowParallel(config, ulysses.get_local_rank(), plan.ulysses, ulysses.get_group())

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def install(self, model) -> None:
        split_rows(model, self.row_parallel)

    def my_branches(self, weights: dict) -> dict:
        """This branch group's share of the guidance branches (contiguous, as even as possible)."""
        levels = list(weights)
        base, extra = divmod(len(levels), self.plan.branches)
        start = self.branch_index * base + min(self.branch_index, extra)
        stop = start + base + (self.branch_index < extra)
        return {level: weights[level] for level in levels[start:stop]}

    def combine(self, partial: torch.Tensor) -> torch.Tensor:
        """The guided prediction from every branch group's weighted part."""
        if self.plan.branches == 1:
            return partial
        total = partial.to(self.device).contiguous()
        dist.all_reduce(total, group=self.branch_group)
        return total.to(partial.device)

    def share(self, job: DenoiseJob | None) -> DenoiseJob | None:
        """Rank 0 sends a segment's job (None: no more segments); every other rank receives it."""
        message = [job.to_cpu() if job is not None and self.is_leader else None]
        dist.broadcast_object_list(message, src=0, group=self.control)
        return message[0]

    def finish(self) -> None:
        """Rank 0 says there are no more segments; then every process leaves together. Leaving alone, rank 0 could
        close its connections before the others had read that message (gloo then aborts them: seen under load)."""
        if self.is_leader:
            self.share(None)
        dist.barrier(group=self.control)
        dist.destroy_process_group()


def start_processes(plan: ParallelPlan, device: str) -> ParallelRun:
    """Join the processes torchrun started (NCCL on GPUs, gloo on CPUs)."""
    if not dist.is_initialized():
        kind = torch.device(device).type
        if kind == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return ParallelRun(plan, device)
