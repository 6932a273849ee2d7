"""Sampling nodes: MTV Sampler (one segment), Chain Segments (the whole soundtrack), Step Cache, MTV Decode.

mtv_core.pipeline.generate, .session, .vae and .speed load diffusers: they are imported when a node runs
(or, for Step Cache's ranges, when ComfyUI asks for its inputs), so importing the pack stays light."""

from __future__ import annotations

from dataclasses import replace

import torch

from mtv_core.audio import Waveform
from mtv_core.errors import GenerationError
from mtv_core.pipeline.memory import render_working_bytes, vae_decode_bytes
from mtv_core.pipeline.preview import preview_for_vae
from mtv_core.pipeline.segments import to_uint8
from mtv_core.pipeline.video import fit_audio
from mtv_core.spec import FPS, MAX_SEED, MAX_STEPS, MIN_STEPS, SAMPLERS, SEGMENT_FRAMES, SEGMENT_STRIDE

from .comfy_adapter import Node, from_comfy_audio, node_error, node_errors, to_comfy_audio, to_comfy_image
from .folders import output_folder
from .model_management import models_on_device, use_models
from .payloads import MTVLatents
from .progress import interrupt_check, progress_callback, sampling_listeners

_SAMPLING_INPUTS = {
    "mtv_model": ("MTV_MODEL", {"tooltip": "From MTV Model Loader."}),
    "vae": ("MTV_VAE", {"tooltip": "From MTV VAE + T5 Loader."}),
    "conditioning": ("MTV_CONDITIONING", {"tooltip": "From MST-ControlNet Apply."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True, "tooltip": "Same seed, same video; segment k uses seed + k."}),
    "steps": ("INT", {"default": 30, "min": MIN_STEPS, "max": MAX_STEPS, "tooltip": "Denoising steps (official: 20, 30 or 50)."}),
    "sampler": (list(SAMPLERS), {"default": "dpm", "tooltip": "dpm: the official stochastic DPM-Solver++(2M); ddim: deterministic."}),
}
_START_IMAGE = ("IMAGE", {"tooltip": "Optional keyframe: the video starts from this picture (resized and centre-cropped to the model's size)."})


def _session(mtv_model, vae, conditioning, seed, steps, sampler, colour_match=False, vae_tile=0):
    from mtv_core.pipeline.generate import GenerationConfig
    from mtv_core.pipeline.session import RenderSession

    config = GenerationConfig(steps=steps, seed=seed, guidance=conditioning.guidance, sampler=sampler,
                              colour_match=colour_match, cache=mtv_model.cache, loras=mtv_model.loras)
    memory = replace(mtv_model.memory, vae_tile_latents=vae_tile or None)
    return RenderSession(mtv_model.model, vae, config, memory, mtv_model.swap, interrupt=interrupt_check(),
                         identity=(mtv_model.name,), **sampling_listeners(steps, preview_for_vae(vae)))


def _load_for_sampling(mtv_model, vae, vae_tile=0):
    """Under ComfyUI, its model management loads the transformer and the VAE, first unloading other models to make
    room for them and for sampling and decoding; without ComfyUI the session places them, as its memory options say."""
    use_models([mtv_model.model, vae], render_working_bytes(mtv_model.model, vae, vae_tile or None))


def _request(conditioning, start_image):
    """ComfyUI's conditioning and IMAGE (B, H, W, 3) in [0, 1] -> what the core renders."""
    from mtv_core.pipeline.session import RenderRequest

    text = conditioning.text
    return RenderRequest(text.embeddings, text.schedule, conditioning.audio.features, conditioning.audio.duration,
                         None if start_image is None else start_image[0])


class MTVSampler(Node, menu="sampling", function="sample", outputs={"frames": "IMAGE", "latent": "MTV_LATENT"}):
    DESCRIPTION = f"Generates one {SEGMENT_FRAMES}-frame segment ({SEGMENT_FRAMES / FPS:.2f} s at {FPS:g} fps) of the soundtrack. For the whole soundtrack use Chain Segments."
    REQUIRED = {
        **_SAMPLING_INPUTS,
        "segment": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip": f"Which segment of the soundtrack: k starts at k*{SEGMENT_STRIDE} frames."}),
    }
    OPTIONAL = {"start_image": _START_IMAGE}

    def sample(self, mtv_model, vae, conditioning, seed, steps, sampler, segment, start_image=None):
        with node_errors("MTV Sampler", "conditioning"):
            session, request = _session(mtv_model, vae, conditioning, seed, steps, sampler), _request(conditioning, start_image)
            plan = session.plan(request)
        with node_errors("MTV Sampler", "segment"):
            plan.segment(segment)
        _load_for_sampling(mtv_model, vae)
        with node_errors("MTV Sampler", "conditioning"):
            frames, latents = session.segment(request, segment)
        return (to_comfy_image(frames), MTVLatents(latents))


class MTVChainSegments(Node, menu="sampling", function="generate", outputs={"frames": "IMAGE", "audio": "AUDIO"}):
    DESCRIPTION = (f"Generates the whole soundtrack as chained segments (stride {SEGMENT_STRIDE}, each continuing the last "
                   "one's tail), saving each finished segment so a stopped job resumes; cuts the video "
                   "and audio to exactly the audio's length.")
    REQUIRED = {
        **_SAMPLING_INPUTS,
        "audio": ("AUDIO", {"tooltip": "The soundtrack to put under the video (the mix, or a stem); cut to the video's length."}),
        "colour_match": ("BOOLEAN", {"default": False, "tooltip": "Shift each segment's colours to the previous one's tail. Off: the official chaining (on the demo, matching made colours drift over a minute)."}),
        "work_folder": ("STRING", {"default": "mtv_segments/job", "tooltip": "Folder under ComfyUI's output for finished segments, one subfolder per job; queueing the same job again resumes from them."}),
    }
    OPTIONAL = {
        "start_image": _START_IMAGE,
        "vae_tile": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Decode in spatial tiles of this many latents (0: no tiling; at least 8 when on). Less memory, slightly different pixels at the seams."}),
    }

    def generate(self, mtv_model, vae, conditioning, seed, steps, sampler, audio, colour_match, work_folder, start_image=None, vae_tile=0):
        waveform = from_comfy_audio(audio)
        if abs(waveform.duration - conditioning.audio.duration) > 0.05:
            raise node_error("MTV Chain Segments", "audio", GenerationError(
                f"this audio ({waveform.duration:.2f}s) is not the one the stems were made from ({conditioning.audio.duration:.2f}s); "
                "connect the same Load Audio output to Demix Stems and here"))
        with node_errors("MTV Chain Segments", "work_folder"):
            folder = output_folder(work_folder)
        with node_errors("MTV Chain Segments", "conditioning"):
            session = _session(mtv_model, vae, conditioning, seed, steps, sampler, colour_match, vae_tile)
            _load_for_sampling(mtv_model, vae, vae_tile)
            frames = session.frames(_request(conditioning, start_image), folder)
        trimmed = fit_audio(waveform.samples, waveform.sample_rate, frames.shape[0], FPS)
        return (to_comfy_image(frames), to_comfy_audio(Waveform(torch.from_numpy(trimmed), waveform.sample_rate)))


def _caches() -> dict:
    from mtv_core.pipeline.speed import CACHES

    return CACHES


def _fbc_threshold() -> tuple:
    fbc = _caches()["fbc"]
    return ("FLOAT", {"default": fbc.default, "min": fbc.low, "max": fbc.high, "step": 0.005, "tooltip": "fbc: higher = more steps reused = faster, less exact."})


def _taylorseer_interval() -> tuple:
    taylorseer = _caches()["taylorseer"]
    return ("INT", {"default": int(taylorseer.default), "min": int(taylorseer.low), "max": int(taylorseer.high), "tooltip": "taylorseer: steps between full computations; 1 = no prediction."})


class MTVStepCache(Node, menu="sampling", function="apply", outputs={"mtv_model": "MTV_MODEL"}):
    DESCRIPTION = ("Makes sampling faster by reusing transformer work between steps (approximate). The cache restarts "
                   "whenever the audio, text or keyframes change, so the motion stays locked to the sound.")
    REQUIRED = {
        "mtv_model": ("MTV_MODEL", {"tooltip": "From MTV Model Loader."}),
        "method": lambda: (list(_caches()), {"default": "fbc", "tooltip": "fbc: skip the later blocks while the first block's output barely changes. taylorseer: predict attention and feed-forward between full steps."}),
        "fbc_threshold": _fbc_threshold,
        "taylorseer_interval": _taylorseer_interval,
    }

    def apply(self, mtv_model, method, fbc_threshold, taylorseer_interval):
        from mtv_core.pipeline.speed import StepCache

        value = fbc_threshold if method == "fbc" else taylorseer_interval
        return (replace(mtv_model, cache=StepCache.parse(f"{method}:{value}")),)


class MTVDecode(Node, menu="sampling", function="decode", outputs={"frames": "IMAGE"}):
    DESCRIPTION = "Decodes MTV latents with the CogVideoX VAE (in temporal slices; optional spatial tiles for less memory)."
    REQUIRED = {
        "vae": ("MTV_VAE", {"tooltip": "From MTV VAE + T5 Loader."}),
        "latent": ("MTV_LATENT", {"tooltip": "From MTV Sampler (MTV's own latent layout)."}),
        "tile_latents": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip": "Spatial tile size in latent pixels (0: no tiling). Tiles blend at the seams, so results differ slightly."}),
    }

    def decode(self, vae, latent, tile_latents):
        from mtv_core.pipeline.vae import decode_latents

        height, width = (min(size, tile_latents or size) for size in latent.samples.shape[-2:])
        with models_on_device([vae], vae_decode_bytes(vae, height, width)):
            pixels = decode_latents(vae, latent.samples, tile_latents or None, progress=progress_callback(1),
                                    interrupt=interrupt_check())[0]
        return (to_comfy_image(to_uint8(pixels)),)
