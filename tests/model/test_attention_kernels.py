"""Every attention backend and the fused per-stream path equal a plain dense reference."""

import math

import pytest
import torch

from mtv_core.attention import BACKENDS, attention, available_backends, fused_attention, resolve_backend
from mtv_core.errors import ConfigError
from mtv_core.models import MTVTransformer3DModel, mtv_config


def dense_masked_reference(queries, keys, values):
    """All streams' cross-attentions as ONE dense attention over every key, with a block mask that
    lets each (stream, latent frame) group see only its own keys: what the batching must equal."""
    groups = len(queries)
    n, h, s, d = queries[0].shape
    k_len = keys[0].shape[2]
    q = torch.cat([x.transpose(0, 1).reshape(h, n * s, d) for x in queries], dim=1).double()
    k = torch.cat([x.transpose(0, 1).reshape(h, n * k_len, d) for x in keys], dim=1).double()
    v = torch.cat([x.transpose(0, 1).reshape(h, n * k_len, d) for x in values], dim=1).double()
    q_group = torch.arange(groups * n).repeat_interleave(s)
    k_group = torch.arange(groups * n).repeat_interleave(k_len)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    scores = scores.masked_fill(q_group[:, None] != k_group[None, :], float("-inf"))
    out = scores.softmax(-1) @ v  # (h, groups*n*s, d)
    return [chunk.reshape(h, n, s, d).transpose(0, 1).float() for chunk in out.chunk(groups, dim=1)]


def random_streams(seed=0, streams=3, n=6, heads=2, s=24, k_len=4, d=16):
    g = torch.Generator().manual_seed(seed)
    make = lambda length: [torch.randn(n, heads, length, d, generator=g) for _ in range(streams)]
    return make(s), make(k_len), make(k_len)


@pytest.mark.parametrize("backend", [b for b in BACKENDS])
def test_backend_equals_dense_reference(backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} needs a CUDA GPU and its package")
    device = "cuda" if backend in ("xformers", "sage") else "cpu"
    dtype = torch.float16 if backend in ("xformers", "sage") else torch.float32
    q, k, v = random_streams()
    expected = dense_masked_reference(q, k, v)
    for i in range(3):
        out = attention(q[i].to(device, dtype), k[i].to(device, dtype), v[i].to(device, dtype), backend).float().cpu()
        tolerance = 3e-2 if dtype == torch.float16 else 1e-5
        torch.testing.assert_close(out, expected[i], atol=tolerance, rtol=tolerance)


def test_fused_streams_equal_dense_reference_and_separate_calls():
    q, k, v = random_streams(seed=1)
    fused = fused_attention(q, k, v, "sdpa")
    expected = dense_masked_reference(q, k, v)
    for out, ref, qi, ki, vi in zip(fused, expected, q, k, v):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out, attention(qi, ki, vi, "sdpa"), atol=1e-6, rtol=1e-6)


def test_fused_is_one_kernel_call(monkeypatch):
    import mtv_core.attention as kernels

    calls = []
    real = kernels.attention
    monkeypatch.setattr(kernels, "attention", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    q, k, v = random_streams()
    kernels.fused_attention(q, k, v)
    assert calls == [torch.Size([18, 2, 24, 16])]


def test_model_gives_the_same_output_with_every_cpu_backend():
    torch.manual_seed(0)
    model = MTVTransformer3DModel(**mtv_config("tiny-multi")).eval()
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 13, 16, 8, 12, generator=g)
    text = torch.randn(1, 226, 32, generator=g)
    features = {s: torch.randn(1, 49, model.config.audio_feature_dim, generator=g) for s in model.audio_streams}
    outputs = {}
    with torch.no_grad():
        tokens = model.project_audio(features)
        for backend in ("sdpa", "math"):
            model.select_attention_backend(backend)
            outputs[backend] = model(latents, text, 500, audio_tokens=tokens)
    torch.testing.assert_close(outputs["sdpa"], outputs["math"], atol=1e-5, rtol=1e-5)


def test_unknown_or_missing_backend_is_explained():
    with pytest.raises(ConfigError, match="unknown attention backend 'flash3'.*sdpa"):
        resolve_backend("flash3")
    if "sage" not in available_backends():
        with pytest.raises(ConfigError, match="'sage' is not available here.*pip install sageattention"):
            resolve_backend("sage")
