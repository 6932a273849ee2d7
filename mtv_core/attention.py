"""Attention kernels: the one place that decides which kernel computes softmax(QK^T/sqrt(d))V.

Every attention in the model (the joint text/video self-attention, the per-latent-frame audio
cross-attentions and the audio interaction blocks) calls `attention` with tensors laid out as
(batch, heads, tokens, head_dim). The backend is chosen by name:

- "sdpa": torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient / cuDNN / math,
  picked by PyTorch for the device and dtype). The default.
- "xformers": xformers.ops.memory_efficient_attention (CUDA, when installed).
- "sage": SageAttention's sageattn (CUDA, when installed; INT8 QK, fp16 PV).
- "math": the plain formula in the working dtype; slow, for debugging and reference.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

from .errors import ConfigError

BACKENDS = ("sdpa", "xformers", "sage", "math")
DEFAULT_BACKEND = "sdpa"

_INSTALL_HINTS = {
    "xformers": "pip install xformers (needs a CUDA build of torch >= 2.10)",
    "sage": "pip install sageattention (needs a CUDA GPU)",
}
_PACKAGES = {"xformers": "xformers", "sage": "sageattention"}


def available_backends() -> list[str]:
    """The backends that can run in this environment."""
    found = ["sdpa", "math"]
    if torch.cuda.is_available():
        found += [name for name, package in _PACKAGES.items() if importlib.util.find_spec(package)]
    return found


def resolve_backend(name: str | None) -> str:
    """Check a backend name and that it can run here; returns the name to use."""
    name = (name or DEFAULT_BACKEND).lower()
    if name not in BACKENDS:
        raise ConfigError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name in _PACKAGES and name not in available_backends():
        raise ConfigError(
            f"attention backend {name!r} is not available here (package missing or no CUDA GPU); "
            f"install it ({_INSTALL_HINTS[name]}) or use 'sdpa'"
        )
    return name


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, heads * head_dim) -> (batch, heads, tokens, head_dim)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, head_dim) -> (batch, tokens, heads * head_dim)."""
    return x.transpose(1, 2).flatten(2)


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, backend: str = DEFAULT_BACKEND) -> torch.Tensor:
    """Unmasked attention over (batch, heads, tokens, head_dim) tensors; returns the same layout as `query`."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(query, key, value)
    if backend == "math":
        return _math_attention(query, key, value)
    if backend == "xformers":
        return _xformers_attention(query, key, value)
    if backend == "sage":
        return _sage_attention(query, key, value)
    raise ConfigError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def fused_attention(
    queries: list[torch.Tensor], keys: list[torch.Tensor], values: list[torch.Tensor], backend: str = DEFAULT_BACKEND
) -> list[torch.Tensor]:
    """Several independent attentions of equal shapes as one batched kernel call.

    The MTV cross-attentions of speech, second speaker and effects share the query length (video
    tokens of one latent frame) and the key length (audio tokens per latent frame), so stacking them
    on the batch axis gives one launch instead of three.
    """
    if len(queries) == 1:
        return [attention(queries[0], keys[0], values[0], backend)]
    if len({q.shape for q in queries}) > 1 or len({k.shape for k in keys}) > 1:
        return [attention(q, k, v, backend) for q, k, v in zip(queries, keys, values)]
    out = attention(torch.cat(queries), torch.cat(keys), torch.cat(values), backend)
    return list(out.chunk(len(queries)))


def _math_attention(query, key, value):
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    return scores.softmax(dim=-1) @ value


def _xformers_attention(query, key, value):
    import xformers.ops

    out = xformers.ops.memory_efficient_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
    return out.transpose(1, 2)


def _sage_attention(query, key, value):
    from sageattention import sageattn

    return sageattn(query, key, value, tensor_layout="HND", is_causal=False)
