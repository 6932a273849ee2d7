"""The distributed engine a run uses is the one its launcher asked for: plain (one process), DDP, FSDP2 or
DeepSpeed ZeRO-2, on GPUs (NCCL) or CPUs (gloo). Anything else is refused before the model is built."""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import DistributedType, InitProcessGroupKwargs

from .errors import TrainerError

ENGINE_NAMES = {DistributedType.NO: "single process", DistributedType.MULTI_GPU: "DDP", DistributedType.MULTI_CPU: "DDP",
                DistributedType.FSDP: "FSDP", DistributedType.DEEPSPEED: "DeepSpeed"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() == "true"


def requested_engine() -> str:
    """What `accelerate launch` (or torchrun) asked for: "deepspeed", "fsdp", "ddp" or "single"."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return "ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "single"


def make_accelerator(mixed_precision: str, batch_size: int, grad_clip: float) -> Accelerator:
    engine = requested_engine()
    cuda = torch.cuda.is_available()
    if engine == "deepspeed":
        accelerator = _deepspeed_accelerator(mixed_precision, batch_size, grad_clip, cuda)
    elif engine == "fsdp":
        accelerator = _fsdp_accelerator(mixed_precision, cuda)
    else:
        # Without CUDA accelerate joins the processes over gloo (MULTI_CPU) only when asked for the CPU.
        accelerator = Accelerator(mixed_precision=mixed_precision, cpu=not cuda)
    _check_engine(engine, accelerator)
    return accelerator


def describe(accelerator: Accelerator) -> str:
    """E.g. "FSDP2 over 2 processes on cpu (gloo)"."""
    name = ENGINE_NAMES.get(accelerator.distributed_type, str(accelerator.distributed_type))
    if accelerator.distributed_type == DistributedType.FSDP:
        name += str(accelerator.state.fsdp_plugin.fsdp_version)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        name += f" ZeRO-{accelerator.state.deepspeed_plugin.zero_stage}"
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
    return f"{name} over {accelerator.num_processes} process(es) on {accelerator.device.type} ({backend})"


def _deepspeed_accelerator(mixed_precision: str, batch_size: int, grad_clip: float, cuda: bool) -> Accelerator:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise TrainerError("the launcher asked for DeepSpeed, which is not installed; pip install -e '.[train]' "
                           "(or pip install deepspeed), or launch with another config") from None
    handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
    accelerator = Accelerator(mixed_precision=mixed_precision, kwargs_handlers=handlers)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # The trainer feeds its own batches (no DataLoader for accelerate to read them from): its options set these.
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        config["train_micro_batch_size_per_gpu"] = batch_size
        config["gradient_accumulation_steps"] = 1
        config["gradient_clipping"] = grad_clip
        config["train_batch_size"] = batch_size * accelerator.num_processes
    return accelerator


def _fsdp_accelerator(mixed_precision: str, cuda: bool) -> Accelerator:
    if cuda:
        return Accelerator(mixed_precision=mixed_precision)
    # accelerate enables FSDP only on accelerator devices; on CPUs the processes join over gloo and the state is
    # switched to FSDP with the plugin the launcher's config describes (FSDP2 shards over gloo on CPUs).
    from accelerate.utils import FullyShardedDataParallelPlugin

    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=True)
    if accelerator.distributed_type == DistributedType.MULTI_CPU:
        plugin = FullyShardedDataParallelPlugin()
        if plugin.fsdp_version != 2:
            raise TrainerError(f"FSDP version {plugin.fsdp_version} cannot run on CPUs here; use fsdp_version: 2 "
                               "(trainer/configs/fsdp.yaml)")
        # AcceleratorState copies PartialState's fields whenever it is made again, so both must say FSDP.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    return accelerator


def _check_engine(engine: str, accelerator: Accelerator) -> None:
    expected = {"deepspeed": {DistributedType.DEEPSPEED}, "fsdp": {DistributedType.FSDP},
                "ddp": {DistributedType.MULTI_GPU, DistributedType.MULTI_CPU}, "single": {DistributedType.NO}}[engine]
    if accelerator.distributed_type not in expected:
        raise TrainerError(f"the launcher asked for {engine.upper() if engine != 'single' else 'one process'} but "
                           f"accelerate set up {describe(accelerator)}; check the accelerate config (distributed_type, "
                           "num_processes) and that this machine can run it")
