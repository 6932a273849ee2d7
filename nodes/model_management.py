"""Our models under ComfyUI's model management. They are plain torch modules that our own code moves (block swap,
per-component offload); registered here, ComfyUI loads them with load_models_gpu, counts their memory, unloads them
when another model needs the room and on POST /free. Without ComfyUI nothing is registered and the nodes place
their models themselves. comfy.* is imported when a node runs (it exists only under ComfyUI)."""

from __future__ import annotations

import functools
import logging
from contextlib import ExitStack, contextmanager

import torch

from mtv_core.pipeline.memory import module_bytes, move_module, on_device


def torch_device() -> torch.device:
    """The device ComfyUI computes on; without ComfyUI, CUDA where there is one."""
    try:
        from comfy.model_management import get_torch_device

        return get_torch_device()
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


PATCHER_ATTRIBUTE = "_mtv_comfy_patcher"


def _model_management():
    try:
        import comfy.model_management
        import comfy.model_patcher  # noqa: F401 (the patcher class below needs it)
    except ImportError:
        return None
    return comfy.model_management


def manage(module, exclude=()):
    """Register a loaded module with ComfyUI's model management (nothing without ComfyUI). `exclude`: submodules our
    own code streams itself (BlockSwap's blocks, the audio encoders), which ComfyUI neither moves nor counts."""
    mm = _model_management()
    if mm is not None:
        patcher = _module_patcher_type()(module, mm.get_torch_device(), mm.unet_offload_device(), tuple(exclude))
        # The module keeps its patcher alive: ComfyUI holds patchers only by weak reference.
        setattr(module, PATCHER_ATTRIBUTE, patcher)
    return module


def use_models(modules, memory_required: int = 0) -> bool:
    """Right before a node computes with `modules`: under ComfyUI, load them onto its device with load_models_gpu,
    which first unloads other models until they and `memory_required` bytes of working memory fit. They stay
    loaded until ComfyUI needs the room. False when the modules are not registered (no ComfyUI): the caller places
    them as before."""
    patchers = [getattr(module, PATCHER_ATTRIBUTE, None) for module in modules]
    mm = _model_management()
    if mm is None or None in patchers:
        return False
    mm.load_models_gpu(patchers, memory_required=memory_required)
    return True


@contextmanager
def models_on_device(modules, memory_required: int = 0):
    """The modules on the compute device while a node computes with them: loaded by ComfyUI's model management (see
    use_models), or, without ComfyUI, moved there for the block and back to the CPU after it."""
    if use_models(modules, memory_required):
        yield
        return
    with ExitStack() as stack:
        for module in modules:
            stack.enter_context(on_device(module, torch_device(), offload=True))
        yield


def vram_available(device) -> int:
    """Bytes a CUDA device can give a model: under ComfyUI, what its model management reports free plus what it
    would unload to make room, less the VRAM its user reserved for other programs."""
    device = torch.device(device)
    mm = _model_management()
    if mm is None:
        return torch.cuda.mem_get_info(device)[0]
    loaded = sum(m.model_loaded_memory() for m in mm.current_loaded_models if m.device == device)
    return mm.get_free_memory(device) + loaded - mm.extra_reserved_memory()


@functools.cache
def _module_patcher_type():
    """ModelPatcher for a plain module; made on first use, when ComfyUI is importable."""
    from comfy.model_patcher import ModelPatcher

    class ModulePatcher(ModelPatcher):
        """A plain module loaded and unloaded whole: ComfyUI's partial ("lowvram") loading works only on its own
        comfy.ops layers. The excluded parts stay where our code puts them. Where the module is, is read from its
        tensors, so a move our own code makes (offload after sampling) is accounted too."""

        def __init__(self, module, load_device, offload_device, exclude):
            self.exclude = exclude
            super().__init__(module, load_device, offload_device, size=module_bytes(module, exclude))

        def loaded_size(self):
            return module_bytes(self.model, self.exclude, on=self.load_device)

        def current_loaded_device(self):
            return self.load_device if self.loaded_size() else self.offload_device

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            before = self.loaded_size()
            self.load(device_to)
            return self.loaded_size() - before

        def partially_unload(self, device_to, memory_to_free=0):
            return 0  # whole or nothing: ComfyUI then unloads the module entirely

        def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
            if device_to is not None:
                move_module(self.model, device_to, self.exclude)

        def unpatch_model(self, device_to=None, unpatch_weights=True):
            if device_to is not None and unpatch_weights:
                move_module(self.model, device_to, self.exclude)
                # tools/check_comfyui.py and check_comfy_models.py read this line to see our models unloaded
                logging.info("[MTV] ComfyUI moved %s to %s", type(self.model).__name__, device_to)

    return ModulePatcher
