"""One segment of 49 frames: sampled with guidance and a clean prefix, then decoded. Chaining segments into a
whole video is the render session's (session.py).

Reproducibility: segment k draws its initial noise, its scheduler noise and its VAE posterior sample from CPU
generators seeded with (seed + k), so a resumed render repeats an uninterrupted one exactly.
"""

from dataclasses import dataclass, field

import torch

from .. import lora
from ..errors import ConfigError
from ..models.fp8 import convert_linears_to_fp8
from ..spec import MAX_SEED, MAX_STEPS, MIN_STEPS, SAMPLERS, SEGMENT_FRAMES
from .guidance import GuidanceScales, GuidedModel
from .memory import BlockSwap, on_device, resolve_device
from .parallel import DenoiseJob, ParallelRun
from .pauses import pause_latent_frames
from .sampling import interruptible, sample
from .segments import Segment, SegmentPlan, fingerprint
from .speed import StepCache, check_compile, compile_blocks, step_cache
from .vae import decode_latents, encode_frames, latent_channels

MIN_VAE_TILE = 8  # latents; tiles overlap by 4


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenerationConfig:
    """How to sample, checked when made. Segment k of a job draws its noise from seed + k."""

    steps: int = 30
    seed: int = 0
    guidance: GuidanceScales = field(default_factory=GuidanceScales)
    sampler: str = "dpm"
    colour_match: bool = False  # official chaining; matching each segment to the last tail made the demo drift
    cache: StepCache | None = None  # step caching (approximate: part of what decides the pixels)
    loras: tuple = ()  # ((mtv_core.lora.LoraAdapter, strength), ...) applied while the model samples

    def __post_init__(self):
        if not _whole(self.steps) or not MIN_STEPS <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps {self.steps!r} is out of range; use {MIN_STEPS}..{MAX_STEPS} "
                              "(official: 20, 30 or 50)")
        if not _whole(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed {self.seed!r} is out of range; use a whole number in 0..{MAX_SEED}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler {self.sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
        if not isinstance(self.guidance, GuidanceScales):
            raise ConfigError(f"guidance {self.guidance!r} is not a GuidanceScales")
        if self.cache is not None and not isinstance(self.cache, StepCache):
            object.__setattr__(self, "cache", StepCache.parse(str(self.cache)))
        object.__setattr__(self, "loras", tuple((adapter, lora.check_strength(strength, str(adapter.path)))
                                                for adapter, strength in self.loras))

    def segment_seed(self, index: int) -> int:
        return self.seed + index

    def as_dict(self) -> dict:
        guidance = {name: scale for name, scale in vars(self.guidance).items() if scale is not None}
        return {"steps": self.steps, "seed": self.seed, "guidance": guidance, "sampler": self.sampler,
                "colour_match": self.colour_match, "cache": None if self.cache is None else str(self.cache),
                "loras": [(adapter.digest, strength) for adapter, strength in self.loras]}


@dataclass(frozen=True)
class MemoryOptions:
    """Where weights live and how the blocks run. Every option computes the same numbers as the plain path (fp8: within
    its rounding; compile: within float reassociation)."""

    device: str = "cpu"
    offload_components: bool = False  # transformer and VAE on the device only while they run
    offload_audio_projection: bool = True  # audio encoders back to the CPU once a segment's tokens exist
    block_swap: int = 0  # transformer blocks kept in CPU memory and streamed in
    fp8: bool = False  # transformer-block Linear weights stored as float8_e4m3fn
    vae_tile_latents: int | None = None  # spatial VAE tiles (approximate; None = plain decode)
    compile: bool = False  # torch.compile each transformer block (regional compilation)

    def __post_init__(self):
        object.__setattr__(self, "device", resolve_device(str(self.device)))
        if self.compile:
            check_compile(self.device)
        if not _whole(self.block_swap) or self.block_swap < 0:
            raise ConfigError(f"block swap {self.block_swap!r} must be a whole number >= 0 (0: no block swap)")
        tile = self.vae_tile_latents
        if tile is not None and (not _whole(tile) or not MIN_VAE_TILE <= tile <= 4096):
            raise ConfigError(f"VAE tile {tile!r} is out of range; use a whole number of latents in {MIN_VAE_TILE}..4096, "
                              "or no tiling")


def check_compatible(model, vae) -> None:
    """Fail before any computation when the VAE's latents are not what the model takes."""
    if latent_channels(vae) != model.config.out_channels:
        raise ConfigError(f"the VAE makes {latent_channels(vae)}-channel latents but the model takes "
                          f"{model.config.out_channels}; pass the CogVideoX VAE that belongs to this model")


def prepare_model(model, memory: MemoryOptions) -> BlockSwap | None:
    """Apply the one-time options (fp8, compile, block swap) to a loaded model; returns the swap to exclude."""
    if memory.fp8:
        convert_linears_to_fp8(model.transformer_blocks)
    if memory.compile:
        compile_blocks(model, memory.device)
    if memory.block_swap:
        return BlockSwap(model, memory.block_swap, memory.device)
    return None


@dataclass
class SegmentInputs:
    text: torch.Tensor  # (1, 226, D)
    features: dict  # stream -> (1, 49, feature_dim)
    prefix_pixels: torch.Tensor | None  # (3, P, H, W) in [-1, 1]
    silent: frozenset = frozenset()  # streams encoded from silence (AudioFeatures.flags)
    speech_levels: torch.Tensor | None = None  # (49,) dBFS, the louder speaker per frame; for speech_in_pauses


class SegmentGenerator:
    """Samples and decodes single segments with one model, VAE and set of options.

    Listeners, all optional: `progress(step, total)` counts sampler steps over the whole job; `preview(step, total,
    latents)` gets each step's clean-latent estimate (1, 13, C, h, w) (only ask for it when showing it);
    `decode_progress(done, total)` counts the decoder's slices of the segment being decoded."""

    def __init__(self, model, vae, config: GenerationConfig, memory: MemoryOptions, swap: BlockSwap | None = None,
                 progress=None, interrupt=None, parallel: ParallelRun | None = None, preview=None,
                 decode_progress=None):
        check_compatible(model, vae)
        self.model, self.vae, self.config, self.memory = model, vae, config, memory
        self.swap, self.parallel = swap, parallel
        self.progress, self.interrupt = progress, interrupt
        self.preview, self.decode_progress = preview, decode_progress
        self.last_prefix_latents = None

    def latent_shape(self) -> tuple:
        c = self.model.config
        frames = (c.sample_frames - 1) // c.temporal_compression_ratio + 1
        return (1, frames, c.out_channels, c.sample_height, c.sample_width)

    def project_audio(self, features: dict):
        model, memory = self.model, self.memory
        # The small non-block parts (e.g. speaker embeddings) come along; the transformer blocks stay where they are.
        small_parts = on_device(model, memory.device, memory.offload_components,
                                exclude=(*model.transformer_blocks, model.audio_encoders))
        with torch.no_grad(), small_parts, on_device(model.audio_encoders, memory.device,
                                                     memory.offload_audio_projection):
            param = next(model.audio_encoders.parameters())
            cond = {name: value.to(param.device, param.dtype) for name, value in features.items()}
            null = {name: torch.zeros_like(value) for name, value in cond.items()}
            return model.project_audio(cond), model.project_audio(null)

    def encode_prefix(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with on_device(self.vae, self.memory.device, self.memory.offload_components):
            return encode_frames(self.vae, pixels[None], generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        with on_device(self.vae, self.memory.device, self.memory.offload_components):
            return decode_latents(self.vae, latents, self.memory.vae_tile_latents, progress=self.decode_progress,
                                  interrupt=self.interrupt)[0]

    def run(self, inputs: SegmentInputs, seed: int, step_offset: int = 0, total_steps: int | None = None) -> torch.Tensor:
        """One segment -> decoded pixels (3, 49, H, W) in [-1, 1]."""
        return self.decode(self.sample_latents(inputs, seed, step_offset, total_steps))

    def sample_latents(self, inputs: SegmentInputs, seed: int, step_offset: int = 0, total_steps: int | None = None) -> torch.Tensor:
        """One segment -> denoised latents (1, 13, C, h, w)."""
        job = self.denoise_job(inputs, seed)
        if self.parallel is not None:
            self.parallel.share(job)
        return denoise(self.model, job, self.config, self.memory, self.swap, self._progress(step_offset, total_steps),
                       self.interrupt, self.parallel, self._preview(step_offset, total_steps))

    def denoise_job(self, inputs: SegmentInputs, seed: int) -> DenoiseJob:
        """Noise, clean prefix latents and audio tokens of one segment: everything the denoising loop needs."""
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = torch.randn(self.latent_shape(), generator=generator)
        prefix = None if inputs.prefix_pixels is None else self.encode_prefix(inputs.prefix_pixels, generator)
        self.last_prefix_latents = prefix
        tokens, null_tokens = self.project_audio(inputs.features)
        clean_mask = torch.zeros(noise.shape[:2], dtype=torch.bool)
        if prefix is not None:
            clean_mask[:, :prefix.shape[1]] = True
        return DenoiseJob(inputs.text, tokens, null_tokens, clean_mask, noise, prefix, generator.get_state(),
                          inputs.silent, self.pauses(inputs))

    def pauses(self, inputs: SegmentInputs) -> torch.Tensor | None:
        """The latent frames where nobody speaks, when the guidance treats them apart and the levels are known."""
        if self.config.guidance.speech_in_pauses is None or inputs.speech_levels is None:
            return None
        return pause_latent_frames(inputs.speech_levels, self.latent_shape()[1], self.model.config.temporal_compression_ratio)

    def _progress(self, offset: int, total: int | None):
        if self.progress is None:
            return None
        return lambda step, steps: self.progress(offset + step, total or steps)

    def _preview(self, offset: int, total: int | None):
        if self.preview is None:
            return None
        return lambda step, steps, latents: self.preview(offset + step, total or steps, latents)


def denoise(model, job: DenoiseJob, config: GenerationConfig, memory: MemoryOptions, swap: BlockSwap | None = None,
            progress=None, interrupt=None, parallel=None, preview=None) -> torch.Tensor:
    """The sampler loop of one segment (in every process of a parallel run) -> latents (1, 13, C, h, w)."""
    generator = torch.Generator("cpu")
    generator.set_state(job.generator_state)
    exclude = (model.audio_encoders, *(swap.blocks if swap else ()))
    with on_device(model, memory.device, memory.offload_components, exclude), lora.applied(model, config.loras), \
            interruptible(model.transformer_blocks, interrupt), step_cache(model, config.cache):
        guided = GuidedModel(model, job.text, job.tokens, job.null_tokens, config.guidance, job.clean_mask, parallel,
                             job.silent, job.pauses)
        return sample(config.sampler, guided, job.noise, config.steps, generator=generator, prefix=job.prefix,
                      progress=progress, interrupt=interrupt, preview=preview)


def segment_features(features, segment: Segment) -> dict:
    """Feature windows (1, 49, dim) per stream for one segment; zero past the padded end of the audio."""
    return {name: window[None].float() for name, window in features.flat_window(segment.start_frame,
                                                                                   SEGMENT_FRAMES).items()}


def segment_speech_levels(features, segment: Segment) -> torch.Tensor | None:
    """The louder speaker's level per frame (49,) dBFS for one segment; None when the features have no levels."""
    return features.speech_levels(segment.start_frame, SEGMENT_FRAMES)


def render_fingerprint(model, config: GenerationConfig, memory: MemoryOptions, text_embeddings, schedule,
                       features, plan: SegmentPlan, start_image, *extra) -> str:
    """Identifies a render's pixels; `extra` adds what the caller knows (e.g. the model file's name and size)."""
    windows = [segment_features(features, s) for s in plan.segments]
    tensors = [w[name] for w in windows for name in sorted(w)]
    if config.guidance.speech_in_pauses is not None:
        tensors += [levels for s in plan.segments if (levels := segment_speech_levels(features, s)) is not None]
    return fingerprint(dict(model.config), config.as_dict(), memory.fp8, memory.vae_tile_latents,
                       [vars(e) for e in schedule.entries], plan.total_frames, text_embeddings,
                       start_image if start_image is not None else "no start image", *extra, *tensors)
