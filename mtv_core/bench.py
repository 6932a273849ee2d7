"""Timing and peak memory of one denoising forward: MTV vs diffusers' plain CogVideoX of the same size."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from dataclasses import dataclass

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from .models import MTVTransformer3DModel, backbone_config


@dataclass
class BenchResult:
    name: str
    seconds: float
    peak_bytes: int


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
    """One CFG-sized forward (batch 2) of MTV with all audio streams, and of the plain backbone."""


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

    plain = CogVideoXTransformer3DModel(**backbone_config(config)).to(device, dtype).eval()
    padded = torch.cat([inputs[0], torch.zeros_like(inputs[0])], dim=2)
    rotary = _rotary(config, frames, device)
    with torch.no_grad():
        results.append(_time("cogvideox", lambda: plain(padded, inputs[1], timestep.to(device), image_rotary_emb=rotary), repeats, device))
    return results


def _bench_mtv(config, inputs, timestep, features, attention_backend, repeats, device, dtype) -> BenchResult:
    mtv = MTVTransformer3DModel(**config).to(device, dtype).eval()
    mtv.select_attention_backend(attention_backend)
    with torch.no_grad():
        tokens = mtv.project_audio({name: features for name in mtv.audio_streams})
        return _time("mtv", lambda: mtv(*inputs, timestep, audio_tokens=tokens), repeats, device)


def _rotary(config, frames, device):
    grid = (config["sample_height"] // config["patch_size"], config["sample_width"] // config["patch_size"])
    return get_3d_rotary_pos_embed(config["attention_head_dim"], ((0, 0), grid), grid, frames, device=device)


def _time(name, fn, repeats, device) -> BenchResult:
    _release_free_memory()
    best = float("inf")
    with PeakMemory(device) as memory:
        fn()  # warm-up, inside the measurement: on CPU freed blocks are reused, so the first call shows the peak
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    return BenchResult(name, best, memory.used if device.type != "cuda" else memory.peak)
