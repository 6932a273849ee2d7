"""Loaders: MTV model, LoRA, VAE + T5, wav2vec2, demixer. Files come from ComfyUI's model folders.

mtv_core.checkpoints and mtv_core.pipeline.generate load diffusers and transformers: they are imported
when a loader runs, so importing the pack stays light."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from mtv_core import lora
from mtv_core.errors import ModelFileError
from mtv_core.pipeline.guidance import MAX_BRANCHES
from mtv_core.pipeline.memory import OFFICIAL_VAE_BYTES, BlockSwap, blocks_to_swap, sampling_activation_bytes
from mtv_core.spec import ATTENTION_BACKENDS

from .comfy_adapter import DEMUCS_FOLDER, NO_LORA, Node, node_error, node_errors
from .model_files import check_model_name, demixer_choices, is_fetch_choice, list_model_files, model_choices, model_path, resolve_model
from .model_management import manage, torch_device, vram_available
from .payloads import ModelHandle

DTYPES = ["auto", "bf16", "fp16", "fp32"]
NONE = "none"
NO_T5 = "none (use a core CLIP)"


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def file_stamp(folder: str, name: str) -> str:
    """A model file's path, size and time: it changes when the file does."""
    if is_fetch_choice(folder, name):
        return name  # not downloaded yet: nothing to stamp, and asking must not download
    if not name or name in (NONE, NO_T5):
        return ""
    path = model_path(folder, name)
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def changes_with_files(**folders: str):
    """A loader's IS_CHANGED, given each file input's model folder: ComfyUI runs the loader again when one of its
    files changes (a changed widget value re-runs it anyway)."""
    def is_changed(cls, **inputs):
        return "|".join(file_stamp(folder, inputs.get(name, NONE)) for name, folder in folders.items())

    return classmethod(is_changed)


class MTVModelLoader(Node, menu="loaders", function="load", outputs={"mtv_model": "MTV_MODEL"}):
    DESCRIPTION = "Loads a converted MTV transformer (single, multi or accm) from models/diffusion_models."
    REQUIRED = {
        "model_name": lambda: (model_choices("diffusion_models"), {"tooltip": "An MTV .safetensors made by `python -m mtv_core convert` or the trainer; a 'fetch:' entry downloads and converts the official model once."}),
        "weight_dtype": (DTYPES, {"default": "auto", "tooltip": "Compute dtype. auto: bf16 on a GPU that has it, else fp32."}),
        "attention": (list(ATTENTION_BACKENDS), {"default": "sdpa", "tooltip": "Attention kernel. xformers and sage need their package and a CUDA GPU."}),
        "block_swap": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "Transformer blocks kept in CPU memory and streamed to the GPU when needed (saves VRAM, costs speed)."}),
        "fp8_weights": ("BOOLEAN", {"default": False, "tooltip": "Store the transformer blocks' linear weights in fp8 (half the memory of bf16); compute stays in the weight dtype."}),
        "offload": ("BOOLEAN", {"default": False, "tooltip": "Keep the model in CPU memory between runs and move it to the GPU only while it samples."}),
    }
    OPTIONAL = {
        "compile": ("BOOLEAN", {"default": False, "tooltip": "torch.compile the transformer blocks (one graph shared by all blocks; the first run takes longer). Needs Triton on a GPU or a C++ compiler on the CPU."}),
        "block_swap_auto": ("BOOLEAN", {"default": False, "tooltip": "Choose block_swap from the VRAM ComfyUI can free: the fewest blocks in CPU memory that leave room for the VAE and for sampling with every guidance branch. Overrides block_swap; 0 on the CPU."}),
    }

    IS_CHANGED = changes_with_files(model_name="diffusion_models")

    @classmethod
    def VALIDATE_INPUTS(cls, model_name):
        return check_model_name("diffusion_models", model_name)

    def load(self, model_name, weight_dtype, attention, block_swap, fp8_weights, offload, compile=False,
             block_swap_auto=False):
        from mtv_core.checkpoints import load_mtv_model
        from mtv_core.pipeline.generate import MemoryOptions, prepare_model
        device = torch_device()
        memory = MemoryOptions(device=str(device), offload_components=offload, block_swap=0 if block_swap_auto else block_swap,
                               fp8=fp8_weights, compile=compile)
        path = resolve_model("diffusion_models", model_name)
        model = load_mtv_model(path, dtype=resolve_dtype(weight_dtype, device), device="cpu")
        model.select_attention_backend(attention)
        swap = prepare_model(model, memory)
        if block_swap_auto:  # after fp8, which changes the blocks' size
            memory = replace(memory, block_swap=auto_block_swap(model, device))
            swap = BlockSwap(model, memory.block_swap, device) if memory.block_swap else None
        manage(model, exclude=(model.audio_encoders, *(swap.blocks if swap else ())))
        return (ModelHandle(model, memory, swap, model_name),)


def auto_block_swap(model, device) -> int:
    """The fewest blocks to stream from CPU memory so that the rest of the model, the VAE's weights and sampling with
    every guidance branch (per-stream guidance can be set after loading) fit in the VRAM ComfyUI can give. A decode's
    own memory is left to the sampler's vae_tile: this loader does not know it."""
    if torch.device(device).type == "cpu":
        return 0
    available = vram_available(device)
    reserve = sampling_activation_bytes(model, MAX_BRANCHES) + OFFICIAL_VAE_BYTES
    count = blocks_to_swap(model, available, reserve, exclude=(model.audio_encoders,))
    logging.info("[MTV] block swap auto: %d of %d blocks in CPU memory (%.1f GiB of VRAM available, %.1f GiB kept "
                 "for sampling and the VAE)", count, len(model.transformer_blocks), available / 2**30, reserve / 2**30)
    return count


class MTVLoraLoader(Node, menu="loaders", function="apply", outputs={"mtv_model": "MTV_MODEL"}):
    DESCRIPTION = ("Applies an MTV LoRA (from `python -m trainer --train lora`, in models/loras) while the model samples. "
                   "Chain several to stack them; the loaded model itself is not changed.")
    REQUIRED = {
        "mtv_model": ("MTV_MODEL", {"tooltip": "From MTV Model Loader (or another MTV LoRA Loader)."}),
        "lora_name": lambda: (list_model_files("loras", (".safetensors",)) or [NO_LORA], {"tooltip": "An MTV LoRA trained on this model."}),
        "strength": ("FLOAT", {"default": 1.0, "min": -lora.MAX_STRENGTH, "max": lora.MAX_STRENGTH, "step": 0.05, "tooltip": "1 = as trained, 0 = off."}),
    }

    IS_CHANGED = changes_with_files(lora_name="loras")

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name):
        return check_model_name("loras", lora_name)

    def apply(self, mtv_model, lora_name, strength):
        from mtv_core.checkpoints import load_lora

        with node_errors("MTV LoRA Loader", "lora_name"):
            adapter = load_lora(model_path("loras", lora_name))
            lora.check_fits(adapter, mtv_model.model)
        return (replace(mtv_model, loras=(*mtv_model.loras, (adapter, lora.check_strength(strength, lora_name)))),)


class MTVVAEAndT5Loader(Node, menu="loaders", function="load", outputs={"vae": "MTV_VAE", "t5": "MTV_T5"}):
    DESCRIPTION = ("Loads the CogVideoX VAE (models/vae) and the T5 v1.1 XXL text encoder folder (models/text_encoders). "
                   "With a core Load CLIP holding t5xxl (the file Flux and SD3 use) connected to MTV Text Encode, choose "
                   f"'{NO_T5}' for t5_name and no second T5 is loaded.")
    REQUIRED = {
        "vae_name": lambda: (model_choices("vae"), {"tooltip": "A diffusers AutoencoderKLCogVideoX folder or the .safetensors converted from SAT 3d-vae.pt; a 'fetch:' entry downloads the official one once."}),
        "t5_name": lambda: (model_choices("text_encoders") + [NO_T5], {"tooltip": f"A Hugging Face T5 encoder folder (config.json, weights and tokenizer); a 'fetch:' entry downloads the official one once; '{NO_T5}': MTV Text Encode reads a core Load CLIP (t5xxl_fp16 or _fp8 .safetensors, type sd3) instead."}),
        "t5_dtype": (DTYPES, {"default": "auto", "tooltip": "dtype of T5 (official: bf16). T5 is released from memory after encoding."}),
    }

    IS_CHANGED = changes_with_files(vae_name="vae", t5_name="text_encoders")

    @classmethod
    def VALIDATE_INPUTS(cls, vae_name):
        """t5_name is left to ComfyUI's own list check, so a problem is reported once, on its own input."""
        return check_model_name("vae", vae_name)

    def load(self, vae_name, t5_name, t5_dtype):
        from mtv_core.checkpoints import load_vae

        vae = manage(load_vae(resolve_model("vae", vae_name), device="cpu"))
        t5 = None if t5_name == NO_T5 else load_t5_folder(t5_name, t5_dtype)
        return (vae, t5)


def load_t5_folder(t5_name, t5_dtype):
    from mtv_core.checkpoints import load_text_encoder

    path = resolve_model("text_encoders", t5_name)
    if path.is_file():
        raise node_error("MTV VAE + T5 Loader", "t5_name", ModelFileError(
            f"{t5_name!r} is a single-file T5 as core's Load CLIP reads it, not a Hugging Face folder; load it with "
            f"Load CLIP (type sd3), connect that to MTV Text Encode's 'clip' input and choose '{NO_T5}' here"))
    t5 = load_text_encoder(path, device="cpu", dtype=resolve_dtype(t5_dtype, torch_device()))
    manage(t5.encoder)
    return t5


class MTVWav2VecLoader(Node, menu="loaders", function="load", outputs={"wav2vec": "MTV_WAV2VEC"}):
    DESCRIPTION = "Loads wav2vec2 (base-960h for the official weights) from models/audio_encoders."
    REQUIRED = {"wav2vec_name": lambda: (model_choices("audio_encoders"), {"tooltip": "A Hugging Face wav2vec2 folder or a single .safetensors file; a 'fetch:' entry downloads wav2vec2-base-960h once."})}

    IS_CHANGED = changes_with_files(wav2vec_name="audio_encoders")

    @classmethod
    def VALIDATE_INPUTS(cls, wav2vec_name):
        return check_model_name("audio_encoders", wav2vec_name)

    def load(self, wav2vec_name):
        from mtv_core.checkpoints import load_wav2vec2

        wav2vec = load_wav2vec2(resolve_model("audio_encoders", wav2vec_name))
        manage(wav2vec.model)
        return (wav2vec,)


_DEMIXER_TIP = ("An HTDemucs model converted with `python -m mtv_core convert-demixer` (.safetensors) or a demucs .th file; "
                "'fetch: htdemucs' downloads the 4-stem htdemucs once.")


def _another_demixer(which: str):
    return lambda: ([NONE] + list_model_files(DEMUCS_FOLDER), {"default": NONE, "tooltip": f"A {which} model of the same layout; the outputs are averaged."})


class MTVDemixerLoader(Node, menu="loaders", function="load", outputs={"demixer": "MTV_DEMIXER"}):
    DESCRIPTION = "Loads one HTDemucs model, or several of one layout to average (MVSEP-CDX23 cinematic: music / effect / dialog), from models/demucs."
    REQUIRED = {
        "model_1": lambda: (demixer_choices(), {"tooltip": _DEMIXER_TIP}),
        "overlap": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 0.9, "step": 0.05, "tooltip": "Overlap between demixing windows (official data preparation: 0.8; slower)."}),
    }
    OPTIONAL = {"model_2": _another_demixer("second"), "model_3": _another_demixer("third")}

    IS_CHANGED = changes_with_files(model_1=DEMUCS_FOLDER, model_2=DEMUCS_FOLDER, model_3=DEMUCS_FOLDER)

    @classmethod
    def VALIDATE_INPUTS(cls, model_1):
        """model_2 and model_3 are left to ComfyUI's own list check, so each problem is reported once."""
        return check_model_name(DEMUCS_FOLDER, model_1)

    def load(self, model_1, overlap, model_2=NONE, model_3=NONE):
        from mtv_core.checkpoints import load_demixer

        names = [n for n in (model_1, model_2, model_3) if n and n != NONE]
        paths = [str(resolve_model(DEMUCS_FOLDER, n)) for n in names]
        return (load_demixer(paths, overlap=overlap, device=torch_device()),)
