"""Memory options: per-component offload, block swap, fp8 weight storage.

All three change where or how weights are stored, never the computation: each is tested against the plain path.
"""

from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError
from ..models.fp8 import FP8_DTYPE, FP8Linear, convert_linears_to_fp8  # noqa: F401 (re-exported)


def _tensors(module: nn.Module, exclude: tuple[nn.Module, ...] = ()):
    skipped = {id(t) for m in exclude for t in (*m.parameters(), *m.buffers())}
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in skipped:
            yield tensor


def resolve_device(name: str) -> str:
    """'auto' (cuda when present, else cpu) or a torch device that exists here."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: this machine has no CUDA GPU that torch can use; use the cpu device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA devices (0..{torch.cuda.device_count() - 1})")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigError(f"device {name!r} is not supported here; use auto, cpu or cuda")
    return str(device)


def move_module(module: nn.Module, device, exclude: tuple[nn.Module, ...] = ()) -> None:
    """Move a module's weights to a device in place, leaving the excluded submodules where they are."""
    device = torch.device(device)
    for tensor in _tensors(module, exclude):
        if tensor.device != device:
            tensor.data = tensor.data.to(device)


def release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def on_device(module: nn.Module, device, offload: bool = True, exclude: tuple[nn.Module, ...] = ()):
    """Model offload per component: the module sits on `device` only inside the block (if offload is on)."""
    move_module(module, device, exclude)
    try:
        yield module
    finally:
        if offload:
            move_module(module, "cpu", exclude)
            release_cached_memory()


class BlockSwap:
    """Keep the first N of `model.transformer_blocks` in CPU memory and stream each one to the compute device just
    before it runs (forward pre-hook); after it runs its weights point back at the CPU copy (no copy back: inference
    does not change them). The CPU copies are pinned when a CUDA device is used so uploads can overlap."""

    def __init__(self, model: nn.Module, blocks_on_cpu: int, device):
        blocks = getattr(model, "transformer_blocks", None)
        if not isinstance(blocks, nn.ModuleList):
            raise ConfigError(f"block swap needs a model with a `transformer_blocks` ModuleList; "
                              f"{type(model).__name__} has none. Turn block swap off (0)")
        if not isinstance(blocks_on_cpu, int) or not 0 <= blocks_on_cpu <= len(blocks):
            raise ConfigError(f"block swap count {blocks_on_cpu!r} is out of range; use 0..{len(blocks)} "
                              "(the number of transformer blocks)")
        self.device = torch.device(device)
        self.blocks = tuple(blocks[:blocks_on_cpu])
        self.uploads = 0
        self._handles = []
        self._cpu_copies = {}
        for block in self.blocks:
            self._keep_on_cpu(block)
            self._handles.append(block.register_forward_pre_hook(self._upload))
            self._handles.append(block.register_forward_hook(self._release))

    def _keep_on_cpu(self, block: nn.Module) -> None:
        pin = self.device.type == "cuda"
        for tensor in _tensors(block):
            cpu = tensor.data.to("cpu")
            self._cpu_copies[id(tensor)] = cpu.pin_memory() if pin else cpu
            tensor.data = self._cpu_copies[id(tensor)]

    def _upload(self, block, args):
        for tensor in _tensors(block):
            tensor.data = self._cpu_copies[id(tensor)].to(self.device, non_blocking=True)
        self.uploads += 1

    def _release(self, block, args, output):
        for tensor in _tensors(block):
            tensor.data = self._cpu_copies[id(tensor)]
        return output

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
