"""Timing and peak memory of one denoising forward: MTV vs diffusers' plain CogVideoX of the same size."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from ...models import MTVTransformer3DModel, backbone_config
from ...pipeline.generate import GenerationConfig, denoise, prepare_model
from ...pipeline.memory import on_device
from ...pipeline.parallel import DenoiseJob
from ...pipeline.sampling import sample
from ...pipeline.speed import AttentionCounter, step_cache


@dataclass
class BenchResult:
    name: str
    seconds: float
    peak_bytes: int
    block_seconds: float  # inside the first transformer block (the part that repeats num_layers times)


class PeakMemory:
    """Peak allocated memory: CUDA's counter on a GPU; on CPU, the process RSS sampled every 5 ms."""
    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = _rss()
            self.peak = self.base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())

    @property
    def used(self) -> int:
        return self.peak - self.base


def _release_free_memory():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_model(config: dict, batch: int = 2, repeats: int = 3, device: str = "cpu", dtype: torch.dtype = torch.float32,
                attention_backend: str = "sdpa") -> list[BenchResult]:
    """One CFG-sized forward (batch 2) of MTV with all audio streams, and of the plain backbone. Both have random
    weights made in `dtype` on `device`; MTV's audio encoders (3 x 1.2 G parameters at the official width) exist one
    at a time, while they project the audio, as they are not part of the timed forward."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    frames = (config["sample_frames"] - 1) // 4 + 1
    latents = torch.randn(batch, frames, config["out_channels"], config["sample_height"], config["sample_width"], generator=generator)
    text = torch.randn(batch, config["max_text_seq_length"], config["text_embed_dim"], generator=generator)
    timestep = torch.full((batch,), 500)
    features = torch.randn(batch, config["sample_frames"], config["audio_feature_dim"], generator=generator)
    results = []

    inputs = [t.to(device, dtype) for t in (latents, text)]
    results.append(_bench_mtv(config, inputs, timestep.to(device), features.to(device, dtype), attention_backend, repeats, device, dtype))

    plain = random_model(CogVideoXTransformer3DModel, backbone_config(config), dtype, device)
    padded = torch.cat([inputs[0], torch.zeros_like(inputs[0])], dim=2)
    rotary = _rotary(config, frames, device)
    with torch.no_grad():
        results.append(_time("cogvideox", plain, lambda: plain(padded, inputs[1], timestep.to(device), image_rotary_emb=rotary),
                             repeats, device))
    return results


def _bench_mtv(config, inputs, timestep, features, attention_backend, repeats, device, dtype) -> BenchResult:
    mtv = random_model(MTVTransformer3DModel, config, dtype, device, on_demand=(AUDIO_ENCODERS,))
    mtv.select_attention_backend(attention_backend)
    with torch.no_grad():
        with encoders_on_demand(mtv, device):
            tokens = mtv.project_audio({name: features for name in mtv.audio_streams})
        return _time("mtv", mtv, lambda: mtv(*inputs, timestep, audio_tokens=tokens), repeats, device)


def _rotary(config, frames, device):
    grid = (config["sample_height"] // config["patch_size"], config["sample_width"] // config["patch_size"])
    return get_3d_rotary_pos_embed(config["attention_head_dim"], ((0, 0), grid), grid, frames, device=device)


def _time(name, model, fn, repeats, device) -> BenchResult:
    _release_free_memory()
    best, block = float("inf"), ModuleClock(model.transformer_blocks[0], device)
    with PeakMemory(device) as memory, block:
        fn()  # warm-up, inside the measurement: on CPU freed blocks are reused, so the first call shows the peak
        for _ in range(repeats):
            _synchronize(device)
            block.seconds, start = 0.0, time.perf_counter()
            fn()
            _synchronize(device)
            if time.perf_counter() - start < best:
                best, block_best = time.perf_counter() - start, block.seconds
    return BenchResult(name, best, memory.used if device.type != "cuda" else memory.peak, block_best)


def _synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModuleClock:
    """Seconds spent inside one module's forward (hooks; the device is synchronised around it)."""

    def __init__(self, module, device=torch.device("cpu")):
        self.module, self.device, self.seconds = module, device, 0.0

    def __enter__(self):
        self._handles = [self.module.register_forward_pre_hook(self._start), self.module.register_forward_hook(self._stop)]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def _start(self, *_):
        _synchronize(self.device)
        self._began = time.perf_counter()

    def _stop(self, *_):
        _synchronize(self.device)
        self.seconds += time.perf_counter() - self._began


# -- the sampling pipeline: one segment's denoising steps, with the memory and speed options -------------------------
@dataclass
class StepResult:
    name: str
    seconds_per_step: float
    first_step: float  # includes compilation and the first upload
    peak_bytes: int
    attention_skipped: float  # fraction of joint self-attentions a step cache left out


class StepTimer:
    """The samplers' progress callback: a time stamp per step."""

    def __init__(self):
        self.stamps = []

    def __call__(self, step: int, total: int) -> None:
        self.stamps.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


AUDIO_ENCODERS = "audio_encoders"


def random_model(model_class, config: dict, dtype: torch.dtype, device="cpu", on_demand: tuple[str, ...] = ()):
    """A model with random weights (normal, std 0.02, seeded), made without the cost of its initialisers and without
    a float32 copy: built on the meta device, cast there, then each tensor allocated in `dtype` on `device` and
    filled. The submodules named in `on_demand` stay on meta (no memory); `encoders_on_demand` gives the audio
    encoders weights only while they run."""
    with torch.device("meta"):
        model = model_class(**config)
    torch.nn.Module.to(model, dtype)  # on meta: costs nothing (diffusers 0.42's .to(dtype) warns for nothing)
    kept = [module for name, module in model.named_modules()
            if not any(name == part or name.startswith(part + ".") for part in on_demand)]
    for module in kept:
        module.to_empty(device=device, recurse=False)
    _fill_random([t for module in kept for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))],
                 torch.device(device), seed=0)
    return model.eval()


def _fill_random(tensors, device: torch.device, seed: int) -> None:
    generator = torch.Generator(device).manual_seed(seed)
    for tensor in tensors:
        if tensor.is_floating_point():
            tensor.data.normal_(0.0, 0.02, generator=generator)


@contextmanager
def encoders_on_demand(model, device):
    """While active, each of the model's meta-device audio encoders gets random weights just before it runs (seeded by
    its name: the second speaker's pass through the speech encoder sees the same weights) and loses them right after,
    so at most one encoder's weights exist at a time."""
    encoders = dict(getattr(model, AUDIO_ENCODERS).items())

    def materialise(name):
        def hook(module, _inputs):
            module.to_empty(device=device)
            _fill_random([*module.parameters(), *module.buffers()], torch.device(device), seed=zlib.crc32(name.encode()))
        return hook

    def release(module, _inputs, _output):
        module.to_empty(device="meta")

    handles = [h for name, encoder in encoders.items()
               for h in (encoder.register_forward_pre_hook(materialise(name)), encoder.register_forward_hook(release))]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for encoder in encoders.values():
            encoder.to_empty(device="meta")  # also when a forward failed halfway


def bench_pipeline(config: dict, steps: int, memory, cache=None, dtype: torch.dtype = torch.bfloat16,
                   attention_backend: str = "sdpa") -> list[StepResult]:
    """`steps` denoising steps of one segment (official joint guidance: two branches per step) with MTV and with
    plain CogVideoX of the same size, each with the same memory and speed options."""
    inputs = _segment_inputs(config, dtype)
    settings = GenerationConfig(steps=steps, seed=0, cache=cache)
    return [_mtv_steps(config, inputs, settings, memory, dtype, attention_backend),
            _plain_steps(config, inputs, settings, memory, dtype)]


def _mtv_steps(config, inputs, settings, memory, dtype, attention_backend) -> StepResult:
    model = random_model(MTVTransformer3DModel, config, dtype, on_demand=(AUDIO_ENCODERS,))
    model.select_attention_backend(attention_backend)
    with encoders_on_demand(model, "cpu"):
        job = _mtv_job(model, inputs)
    swap = prepare_model(model, memory)
    return _bench_steps("mtv", model, memory, lambda timer: denoise(model, job, settings, memory, swap, progress=timer))


def _plain_steps(config, inputs, settings, memory, dtype) -> StepResult:
    model = random_model(CogVideoXTransformer3DModel, backbone_config(config), dtype)
    swap = prepare_model(model, memory)
    guided = _plain_guided(model, config, inputs, settings.guidance.text)

    def run(timer):
        with on_device(model, memory.device, memory.offload_components, swap.blocks if swap else ()), \
                step_cache(model, settings.cache), model.cache_context("cogvideox"):
            sample(settings.sampler, guided, inputs["noise"], settings.steps, generator=torch.Generator().manual_seed(0),
                   progress=timer)
    return _bench_steps("cogvideox", model, memory, run)


def _segment_inputs(config: dict, dtype: torch.dtype) -> dict:
    generator = torch.Generator().manual_seed(0)
    frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
    shape = (1, frames, config["out_channels"], config["sample_height"], config["sample_width"])
    return {"noise": torch.randn(shape, generator=generator),
            "text": torch.randn(1, config["max_text_seq_length"], config["text_embed_dim"], generator=generator).to(dtype),
            "features": torch.randn(1, config["sample_frames"], config["audio_feature_dim"], generator=generator).to(dtype)}


def _mtv_job(model, inputs):
    """The segment's denoising job: audio tokens projected once, as the pipeline does."""
    with torch.no_grad():
        streams = {name: inputs["features"] for name in model.audio_streams}
        tokens = model.project_audio(streams)
        null_tokens = model.project_audio({name: torch.zeros_like(value) for name, value in streams.items()})
    clean = torch.zeros(inputs["noise"].shape[:2], dtype=torch.bool)
    return DenoiseJob(inputs["text"], tokens, null_tokens, clean, inputs["noise"], None,
                      torch.Generator().manual_seed(0).get_state())


def _plain_guided(model, config: dict, inputs: dict, scale: float):
    """CogVideoX with the official joint CFG (unconditional = zero text) as a sampler's model function."""
    frames, height, width = inputs["noise"].shape[1], config["sample_height"], config["sample_width"]
    grid = (height // config["patch_size"], width // config["patch_size"])
    rotary = {}

    def model_fn(x, t):
        param = next(model.parameters())
        batch = torch.cat([x, x]).to(param.device, param.dtype)
        batch = torch.cat([batch, torch.zeros_like(batch)], dim=2)
        text = inputs["text"].to(param.device)
        if param.device not in rotary:
            rotary[param.device] = get_3d_rotary_pos_embed(config["attention_head_dim"], ((0, 0), grid), grid, frames,
                                                           device=param.device)
        timestep = torch.full((2,), t, device=param.device)
        v = model(batch, torch.cat([torch.zeros_like(text), text]), timestep, image_rotary_emb=rotary[param.device], return_dict=False)[0]
        uncond, cond = v.float().to(x.device).chunk(2)
        return uncond + scale * (cond - uncond)
    return model_fn


def _bench_steps(name: str, model, memory, run) -> StepResult:
    _release_free_memory()
    timer, device = StepTimer(), torch.device(memory.device)
    with torch.no_grad(), PeakMemory(device) as peak, AttentionCounter(model) as counter:
        run(timer)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    durations = timer.durations()
    later = durations[1:] or durations
    return StepResult(name, sum(later) / len(later), durations[0], peak.peak if device.type == "cuda" else peak.used,
                      counter.skipped / max(counter.skipped + counter.computed, 1))
