"""Sampling nodes: MTV Sampler (one segment), Chain Segments (the whole soundtrack), MTV Decode."""

from __future__ import annotations

import torch

from mtv_core.spec import FPS, MAX_SEED, MAX_STEPS, MIN_STEPS, SAMPLERS, SEGMENT_FRAMES, SEGMENT_STRIDE

from . import comfy_adapter as comfy
from .audio import node_error
from .comfy_adapter import from_comfy_audio
from .payloads import MTVLatents


def _sampling_inputs():
    return {
        "mtv_model": ("MTV_MODEL", {"tooltip": "From MTV Model Loader."}),
        "vae": ("MTV_VAE", {"tooltip": "From MTV VAE + T5 Loader."}),
        "conditioning": ("MTV_CONDITIONING", {"tooltip": "From MST-ControlNet Apply."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True, "tooltip": "Same seed, same video; segment k uses seed + k."}),
        "steps": ("INT", {"default": 30, "min": MIN_STEPS, "max": MAX_STEPS, "tooltip": "Denoising steps (official: 20, 30 or 50)."}),
        "sampler": (list(SAMPLERS), {"default": "dpm", "tooltip": "dpm: the official stochastic DPM-Solver++(2M); ddim: deterministic."}),
    }


_START_IMAGE = ("IMAGE", {"tooltip": "Optional keyframe: the video starts from this picture (resized and centre-cropped to the model's size)."})


def _session(mtv_model, vae, conditioning, seed, steps, sampler, colour_match=True, vae_tile=0):
    from dataclasses import replace

    from mtv_core.pipeline.generate import GenerationConfig
    from mtv_core.pipeline.preview import preview_for_vae
    from mtv_core.pipeline.session import RenderSession

    config = GenerationConfig(steps=steps, seed=seed, guidance=conditioning.guidance, sampler=sampler,
                              colour_match=colour_match, cache=mtv_model.cache, loras=mtv_model.loras)
    memory = replace(mtv_model.memory, vae_tile_latents=vae_tile or None)
    return RenderSession(mtv_model.model, vae, config, memory, mtv_model.swap, interrupt=comfy.interrupt_check(),
                         identity=(mtv_model.name,), **comfy.sampling_listeners(steps, preview_for_vae(vae)))


def _load_for_sampling(mtv_model, vae, vae_tile=0):
    """Under ComfyUI, its model management loads the transformer and the VAE, first unloading other models to make
    room for them and for sampling and decoding; without ComfyUI the session places them, as its memory options say."""
    from mtv_core.pipeline.memory import render_working_bytes

    comfy.use_models([mtv_model.model, vae], render_working_bytes(mtv_model.model, vae, vae_tile or None))


def _render(conditioning, start_image):
    """ComfyUI's conditioning and IMAGE (B, H, W, 3) in [0, 1] -> what the core renders."""
    from mtv_core.pipeline.session import Render

    text = conditioning.text
    return Render(text.embeddings, text.schedule, conditioning.audio.features, conditioning.audio.duration,
                  None if start_image is None else start_image[0])


def _to_image(frames_uint8):
    """(N, H, W, 3) uint8 -> ComfyUI IMAGE float32 in [0, 1]."""
    return frames_uint8.float() / 255.0


class MTVSampler:
    DESCRIPTION = f"Generates one {SEGMENT_FRAMES}-frame segment ({SEGMENT_FRAMES / FPS:.2f} s at {FPS:g} fps) of the soundtrack. For the whole soundtrack use Chain Segments."
    CATEGORY = "MTV audio-sync/sampling"
    RETURN_TYPES = ("IMAGE", "MTV_LATENT")
    RETURN_NAMES = ("frames", "latent")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_sampling_inputs(),
                "segment": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip": f"Which segment of the soundtrack: k starts at k*{SEGMENT_STRIDE} frames."}),
            },
            "optional": {"start_image": _START_IMAGE},
        }

    def sample(self, mtv_model, vae, conditioning, seed, steps, sampler, segment, start_image=None):
        from mtv_core.errors import GenerationError

        try:
            session, render = _session(mtv_model, vae, conditioning, seed, steps, sampler), _render(conditioning, start_image)
            count = len(session.plan(render).segments)
        except Exception as error:
            raise node_error("MTV Sampler", "conditioning", error)
        if segment >= count:
            raise node_error("MTV Sampler", "segment", GenerationError(
                f"segment {segment} does not exist: the audio has {count} segments (0..{count - 1})"))
        _load_for_sampling(mtv_model, vae)
        try:
            frames, latents = session.segment(render, segment)
        except Exception as error:
            raise node_error("MTV Sampler", "conditioning", error)
        return (_to_image(frames), MTVLatents(latents))


class MTVChainSegments:
    DESCRIPTION = (f"Generates the whole soundtrack as chained segments (stride {SEGMENT_STRIDE}, each continuing the last "
                   "one's tail, colour-matched), saving each finished segment so a stopped job resumes; cuts the video "
                   "and audio to exactly the audio's length.")
    CATEGORY = "MTV audio-sync/sampling"
    RETURN_TYPES = ("IMAGE", "AUDIO")
    RETURN_NAMES = ("frames", "audio")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_sampling_inputs(),
                "audio": ("AUDIO", {"tooltip": "The soundtrack to put under the video (the mix, or a stem); cut to the video's length."}),
                "colour_match": ("BOOLEAN", {"default": True, "tooltip": "Match each segment's colours to the previous tail (prevents drift)."}),
                "work_folder": ("STRING", {"default": "mtv_segments/job", "tooltip": "Folder under ComfyUI's output for finished segments, one subfolder per job; queueing the same job again resumes from them."}),
            },
            "optional": {
                "start_image": _START_IMAGE,
                "vae_tile": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Decode in spatial tiles of this many latents (0: no tiling; at least 8 when on). Less memory, slightly different pixels at the seams."}),
            },
        }

    def generate(self, mtv_model, vae, conditioning, seed, steps, sampler, audio, colour_match, work_folder, start_image=None, vae_tile=0):
        from mtv_core.errors import GenerationError
        from mtv_core.pipeline.video import fit_audio

        waveform = from_comfy_audio(audio)
        if abs(waveform.duration - conditioning.audio.duration) > 0.05:
            raise node_error("MTV Chain Segments", "audio", GenerationError(
                f"this audio ({waveform.duration:.2f}s) is not the one the stems were made from ({conditioning.audio.duration:.2f}s); "
                "connect the same Load Audio output to Demix Stems and here"))
        try:
            folder = comfy.output_folder(work_folder)
        except Exception as error:
            raise node_error("MTV Chain Segments", "work_folder", error)
        try:
            session = _session(mtv_model, vae, conditioning, seed, steps, sampler, colour_match, vae_tile)
            _load_for_sampling(mtv_model, vae, vae_tile)
            frames = session.frames(_render(conditioning, start_image), folder)
        except Exception as error:
            raise node_error("MTV Chain Segments", "conditioning", error)
        trimmed = fit_audio(waveform.samples, waveform.sample_rate, frames.shape[0], FPS)
        return (_to_image(frames), {"waveform": torch.from_numpy(trimmed)[None], "sample_rate": waveform.sample_rate})


class MTVStepCache:
    DESCRIPTION = ("Makes sampling faster by reusing transformer work between steps (approximate). The cache restarts "
                   "whenever the audio, text or keyframes change, so the motion stays locked to the sound.")
    CATEGORY = "MTV audio-sync/sampling"
    RETURN_TYPES = ("MTV_MODEL",)
    RETURN_NAMES = ("mtv_model",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        from mtv_core.pipeline.speed import CACHES

        fbc, taylorseer = CACHES["fbc"], CACHES["taylorseer"]
        return {
            "required": {
                "mtv_model": ("MTV_MODEL", {"tooltip": "From MTV Model Loader."}),
                "method": (list(CACHES), {"default": "fbc", "tooltip": "fbc: skip the later blocks while the first block's output barely changes. taylorseer: predict attention and feed-forward between full steps."}),
                "fbc_threshold": ("FLOAT", {"default": fbc.default, "min": fbc.low, "max": fbc.high, "step": 0.005, "tooltip": "fbc: higher = more steps reused = faster, less exact."}),
                "taylorseer_interval": ("INT", {"default": int(taylorseer.default), "min": int(taylorseer.low), "max": int(taylorseer.high), "tooltip": "taylorseer: steps between full computations; 1 = no prediction."}),
            }
        }

    def apply(self, mtv_model, method, fbc_threshold, taylorseer_interval):
        from dataclasses import replace

        from mtv_core.pipeline.speed import StepCache

        value = fbc_threshold if method == "fbc" else taylorseer_interval
        return (replace(mtv_model, cache=StepCache.parse(f"{method}:{value}")),)


class MTVDecode:
    DESCRIPTION = "Decodes MTV latents with the CogVideoX VAE (in temporal slices; optional spatial tiles for less memory)."
    CATEGORY = "MTV audio-sync/sampling"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("MTV_VAE", {"tooltip": "From MTV VAE + T5 Loader."}),
                "latent": ("MTV_LATENT", {"tooltip": "From MTV Sampler (MTV's own latent layout)."}),
                "tile_latents": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip": "Spatial tile size in latent pixels (0: no tiling). Tiles blend at the seams, so results differ slightly."}),
            }
        }

    def decode(self, vae, latent, tile_latents):
        from mtv_core.pipeline.memory import vae_decode_bytes
        from mtv_core.pipeline.segments import to_uint8
        from mtv_core.pipeline.vae import decode_latents

        height, width = (min(size, tile_latents or size) for size in latent.samples.shape[-2:])
        with comfy.models_on_device([vae], vae_decode_bytes(vae, height, width)):
            pixels = decode_latents(vae, latent.samples, tile_latents or None, progress=comfy.progress_callback(1),
                                    interrupt=comfy.interrupt_check())[0]
        return (_to_image(to_uint8(pixels)),)
