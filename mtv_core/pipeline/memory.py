"""Memory options: per-component offload, block swap, fp8 weight storage.

All three change where or how weights are stored, never the computation: each is tested against the plain path.
"""

from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError
from .guidance import MAX_BRANCHES


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


def module_bytes(module: nn.Module, exclude: tuple[nn.Module, ...] = (), on=None) -> int:
    """Bytes of a module's weights and buffers, leaving out the excluded submodules; with `on`, only those on that
    device."""
    device = None if on is None else torch.device(on)
    return sum(t.nelement() * t.element_size() for t in _tensors(module, exclude)
               if device is None or _same_device(t.device, device))


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    return actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)


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


# Working memory of one batched transformer forward, in elements per (batch x token x width): 14.5 and 14.9
# measured as the peak growth of resident memory over one block of the real 5B width (CPU, fp32, 2.2k and 4.5k
# tokens: linear, so the attention kernel holds no tokens x tokens matrix); 18 leaves room for the CUDA caching
# allocator's fragmentation.
ACTIVATION_ELEMENTS = 18


def sampling_activation_bytes(model: nn.Module, branches: int) -> int:
    """Working memory of one denoising step that batches `branches` guidance branches, beyond the weights."""
    c = model.config
    latent_frames = (c.sample_frames - 1) // c.temporal_compression_ratio + 1
    video_tokens = latent_frames * (c.sample_height // c.patch_size) * (c.sample_width // c.patch_size)
    width = c.num_attention_heads * c.attention_head_dim
    element = next(model.parameters()).element_size()  # the compute dtype (fp8 weights are buffers)
    return ACTIVATION_ELEMENTS * branches * (c.max_text_seq_length + video_tokens) * width * element


# A CogVideoX VAE decode's working memory (all frames, in its temporal slices) per output pixel of the frame and per
# channel of its full-resolution stage, in elements: 179 measured as above with the official config (128 channels;
# 64x96 and 128x192 pixels: linear), 211 with the same room for fragmentation. An upper bound: the CPU's conv3d
# unfolds its input, which cuDNN does not.
VAE_DECODE_ELEMENTS = 211
OFFICIAL_VAE_BYTES = 215_583_907 * 4  # the CogVideoX VAE in fp32, as MTV VAE + T5 Loader loads it


def vae_decode_bytes(vae: nn.Module, height_latents: int, width_latents: int) -> int:
    """Working memory of decoding latents of this spatial size (one tile's, when tiled)."""
    channels = vae.config.block_out_channels
    pixels = height_latents * width_latents * 4 ** (len(channels) - 1)
    return VAE_DECODE_ELEMENTS * pixels * channels[0] * next(vae.parameters()).element_size()


def render_working_bytes(model: nn.Module, vae: nn.Module, tile_latents: int | None = None) -> int:
    """Working memory of a render beyond the weights: a denoising step with every guidance branch (the scales can
    change after loading), or a decode (of one tile), whichever is larger."""
    c = model.config
    height, width = (min(size, tile_latents or size) for size in (c.sample_height, c.sample_width))
    return max(sampling_activation_bytes(model, MAX_BRANCHES), vae_decode_bytes(vae, height, width))


def blocks_to_swap(model: nn.Module, free_bytes: int, reserve_bytes: int, exclude: tuple[nn.Module, ...] = ()) -> int:
    """The fewest transformer blocks to keep in CPU memory (BlockSwap streams the first N) so that the other weights
    (less `exclude`) and `reserve_bytes` of working memory fit in `free_bytes`; all blocks when even that is too much."""
    blocks = model.transformer_blocks
    resident = module_bytes(model, exclude)
    for count, block in enumerate(blocks):
        if resident + reserve_bytes <= free_bytes:
            return count
        resident -= module_bytes(block)
    return len(blocks)
