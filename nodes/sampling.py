"""Sampling nodes: MTV Sampler (one segment), Chain Segments (the whole soundtrack), MTV Decode."""

from __future__ import annotations

import torch

from . import comfy_adapter as comfy
from .audio import node_error
from .payloads import MTVLatents

SAMPLERS = ["dpm", "ddim"]
FPS = 24.0


def _sampling_inputs():
    return {
        "mtv_model": ("MTV_MODEL", {"tooltip": "From MTV Model Loader."}),
        "vae": ("MTV_VAE", {"tooltip": "From MTV VAE + T5 Loader."}),
        "conditioning": ("MTV_CONDITIONING", {"tooltip": "From MST-ControlNet Apply."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 2**53, "control_after_generate": True, "tooltip": "Same seed, same video."}),
        "steps": ("INT", {"default": 30, "min": 1, "max": 200, "tooltip": "Denoising steps (official: 20, 30 or 50)."}),
        "sampler": (SAMPLERS, {"default": "dpm", "tooltip": "dpm: the official stochastic DPM-Solver++(2M); ddim: deterministic."}),
    }


_START_IMAGE = ("IMAGE", {"tooltip": "Optional keyframe: the video starts from this picture (resized and centre-cropped to the model's size)."})


def _generator(mtv_model, vae, conditioning, seed, steps, sampler, total_steps):
    from mtv_core.pipeline.generate import GenerationConfig, SegmentGenerator

    config = GenerationConfig(steps=steps, seed=seed, guidance=conditioning.guidance, sampler=sampler, fps=FPS)
    progress = comfy.progress_callback(total_steps)
    interrupt = comfy.interrupt_check()
    return SegmentGenerator(mtv_model.model, vae, config, mtv_model.memory, mtv_model.swap, progress, interrupt)


def _start_pixels(image, model):
    """ComfyUI IMAGE (B, H, W, 3) in [0, 1] -> one clean frame (3, 1, h, w) in [-1, 1] at the model's size."""
    if image is None:
        return None
    from PIL import Image

    from mtv_core.pipeline.keyframes import fit_image, image_to_tensor

    pixels = (image[0].clamp(0, 1) * 255).round().byte().cpu().numpy()
    size = _video_size(model)
    return image_to_tensor(fit_image(Image.fromarray(pixels), *size))


def _video_size(model) -> tuple[int, int]:
    from mtv_core.pipeline.vae import SPATIAL_FACTOR

    return model.config.sample_width * SPATIAL_FACTOR, model.config.sample_height * SPATIAL_FACTOR


def _to_image(frames_uint8):
    """(N, H, W, 3) uint8 -> ComfyUI IMAGE float32 in [0, 1]."""
    return frames_uint8.float() / 255.0


def _plan(conditioning, node: str):
    from mtv_core.pipeline.segments import output_frame_count, plan_segments

    frames = output_frame_count(conditioning.audio.duration, FPS)
    if frames < 1:
        raise node_error(node, "conditioning", _error(
            f"the audio lasts {conditioning.audio.duration:.3f}s, shorter than one video frame (1/{FPS:g}s); give longer audio"))
    return plan_segments(frames)


def _error(message: str):
    from mtv_core.errors import GenerationError

    return GenerationError(message)


class MTVSampler:
    DESCRIPTION = "Generates one 49-frame segment (2.04 s at 24 fps) of the soundtrack. For the whole soundtrack use Chain Segments."
    CATEGORY = "MTV/sampling"
    RETURN_TYPES = ("IMAGE", "MTV_LATENT")
    RETURN_NAMES = ("frames", "latent")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_sampling_inputs(),
                "segment": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip": "Which segment of the soundtrack: k starts at k*44 frames."}),
            },
            "optional": {"start_image": _START_IMAGE},
        }

    def sample(self, mtv_model, vae, conditioning, seed, steps, sampler, segment, start_image=None):
        from mtv_core.pipeline.generate import SegmentInputs, segment_features
        from mtv_core.pipeline.segments import to_uint8

        plan = _plan(conditioning, "MTV Sampler")
        if segment >= len(plan.segments):
            raise node_error("MTV Sampler", "segment", _error(
                f"segment {segment} does not exist: the audio has {len(plan.segments)} segments (0..{len(plan.segments) - 1})"))
        chosen = plan.segments[segment]
        text = conditioning.text
        inputs = SegmentInputs(text.schedule.embedding_at(text.embeddings, chosen.centre_time(FPS)),
                               segment_features(conditioning.audio.features, chosen),
                               _start_pixels(start_image, mtv_model.model))
        try:
            generator = _generator(mtv_model, vae, conditioning, seed, steps, sampler, steps)
            latents = generator.sample_latents(inputs, seed + segment)
            pixels = generator.decode(latents)
        except Exception as error:
            raise node_error("MTV Sampler", "conditioning", error)
        return (_to_image(to_uint8(pixels)), MTVLatents(latents))


class MTVChainSegments:
    DESCRIPTION = ("Generates the whole soundtrack as chained segments (stride 44, each continuing the last one's "
                   "tail, colour-matched), saving each finished segment so a stopped job resumes; cuts the video and "
                   "audio to exactly the audio's length.")
    CATEGORY = "MTV/sampling"
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
            "optional": {"start_image": _START_IMAGE},
        }

    def generate(self, mtv_model, vae, conditioning, seed, steps, sampler, audio, colour_match, work_folder, start_image=None):
        from dataclasses import replace

        from mtv_core.audio import from_comfy_audio
        from mtv_core.pipeline.generate import generate_frames, job_fingerprint
        from mtv_core.pipeline.segments import SegmentStore
        from mtv_core.pipeline.video import fit_audio

        waveform = from_comfy_audio(audio)
        if abs(waveform.duration - conditioning.audio.duration) > 0.05:
            raise node_error("MTV Chain Segments", "audio", _error(
                f"this audio ({waveform.duration:.2f}s) is not the one the stems were made from ({conditioning.audio.duration:.2f}s); "
                "connect the same Load Audio output to Demix Stems and here"))
        plan = _plan(conditioning, "MTV Chain Segments")
        start = _start_pixels(start_image, mtv_model.model)
        try:
            generator = _generator(mtv_model, vae, conditioning, seed, steps, sampler, steps * len(plan.segments))
            generator.config = replace(generator.config, colour_match=colour_match)
            text = conditioning.text
            fingerprint = job_fingerprint(mtv_model.model, generator.config, mtv_model.memory, text.embeddings,
                                          text.schedule, conditioning.audio.features, plan, start, mtv_model.name)
            with SegmentStore(comfy.output_folder(work_folder), fingerprint) as store:
                frames = generate_frames(generator, text.embeddings, text.schedule, conditioning.audio.features, plan, store, start)
        except Exception as error:
            raise node_error("MTV Chain Segments", "conditioning", error)
        trimmed = fit_audio(waveform.samples, waveform.sample_rate, frames.shape[0], FPS)
        return (_to_image(frames), {"waveform": torch.from_numpy(trimmed)[None], "sample_rate": waveform.sample_rate})


class MTVDecode:
    DESCRIPTION = "Decodes MTV latents with the CogVideoX VAE (in temporal slices; optional spatial tiles for less memory)."
    CATEGORY = "MTV/sampling"
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
        from mtv_core.pipeline.memory import on_device
        from mtv_core.pipeline.segments import to_uint8
        from mtv_core.pipeline.vae import decode_latents

        with on_device(vae, comfy.torch_device(), offload=True):
            pixels = decode_latents(vae, latent.samples, tile_latents or None)[0]
        return (_to_image(to_uint8(pixels)),)
