"""Speed options that change how often or how the transformer blocks run, not what they compute: step caching
(diffusers' caches, made audio-aware) and compiled blocks.

Step caching reuses block work between denoising steps. The audio enters every block (per-frame cross-attention,
music modulation), so a cache must never reuse work done with other audio: a hook restarts the cache whenever the
text, audio or clean prefix differ from the previous call's (mtv_core.hooks.step_cache), the hooks live for one
segment only, and all guidance branches run in one batched call.
TaylorSeer predicts only the joint self-attention and the feed-forward; the audio cross-attention and the music
modulation run at every step.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..hooks.step_cache import cache_per_conditioning


@dataclass(frozen=True)
class CacheKind:
    setting: str  # what the number after the name sets
    default: float
    low: float
    high: float
    whole: bool = False


# The defaults and what they cost in sync: README.md, "Speed".
CACHES = {
    "fbc": CacheKind("threshold (relative change of the first block's residual that forces a full step)", 0.15, 0.001, 1.0),
    "taylorseer": CacheKind("steps between full computations (the attention is predicted in between)", 2, 1, 20, whole=True),
}


@dataclass(frozen=True)
class StepCache:
    """A step cache by name, with its one setting: "fbc[:THRESHOLD]" or "taylorseer[:INTERVAL]"."""

    name: str
    value: float

    @classmethod
    def parse(cls, text: str | None) -> "StepCache | None":
        if text is None or text.strip().lower() in ("", "none", "off"):
            return None
        name, _, value = text.strip().lower().partition(":")
        if name not in CACHES:
            raise ConfigError(f"step cache {text!r} is unknown; use one of {', '.join(CACHES)} (or none), "
                              "optionally with :VALUE, e.g. fbc:0.15")
        kind = CACHES[name]
        try:
            number = float(value) if value else float(kind.default)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and kind.low <= number <= kind.high and (not kind.whole or number.is_integer())):
            raise ConfigError(f"step cache {text!r}: {name}'s {kind.setting} must be in {kind.low:g}..{kind.high:g}"
                              f"{' (a whole number)' if kind.whole else ''}; the default is {kind.default:g}")
        return cls(name, number)

    def check_blocks(self, blocks: int) -> None:
        """The first-block cache runs block 0 and from its residual decides whether to reuse the other blocks' work:
        with fewer than 2 blocks there is nothing to reuse (diffusers fails with an IndexError)."""
        if self.name == "fbc" and blocks < 2:
            raise ConfigError(f"step cache {self}: the first-block cache needs at least 2 transformer blocks (it skips "
                              f"the blocks after the first) and this model has {blocks}; use taylorseer or no cache")

    def diffusers_config(self):
        from diffusers import FirstBlockCacheConfig, TaylorSeerCacheConfig

        if self.name == "fbc":
            return FirstBlockCacheConfig(threshold=self.value)
        return TaylorSeerCacheConfig(cache_interval=int(self.value), disable_cache_before_step=2,
                                     taylor_factors_dtype=torch.float32, cache_identifiers=[r"transformer_blocks\.\d+\.(attn1|ff)"])

    def __str__(self) -> str:
        return f"{self.name}:{self.value:g}"


@contextmanager
def step_cache(model, cache: StepCache | None):
    """`cache` on `model` for one segment's denoising: installed fresh, removed after (whatever happened)."""
    if cache is None:
        yield
        return
    cache.check_blocks(len(model.transformer_blocks))
    model.enable_cache(cache.diffusers_config())
    try:
        with cache_per_conditioning(model):
            yield
    finally:
        model.disable_cache()


def compile_blocks(model, device: str) -> None:
    """Regional compilation: every transformer block's forward goes through torch.compile. The blocks share one
    graph (same code, same shapes), so compiling costs one block's time. Hooks (block swap, Cancel, step caches, row
    parallelism) stay outside the compiled code. If the compiler fails on the first call, the blocks run uncompiled,
    with a message; the forwards stay in place, so hooks installed after this keep working."""
    check_compile(device)
    failures: list[Exception] = []  # shared by the blocks: once one fails, all run uncompiled
    for block in model.transformer_blocks:
        block.forward = _falling_back(torch.compile(block.forward), block.forward, failures)


def _falling_back(compiled, forward, failures: list):
    from torch._dynamo.exc import BackendCompilerFailed

    def run(*args, **kwargs):
        if not failures:
            try:
                return compiled(*args, **kwargs)
            except BackendCompilerFailed as error:
                failures.append(error)
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"torch.compile failed ({reason[:300]}); the transformer blocks run uncompiled", file=sys.stderr)
        return forward(*args, **kwargs)
    return run


def check_compile(device: str) -> None:
    """Fail with the fix when this torch cannot compile for `device`: no C++ compiler for CPU code, no Triton for
    GPU code. (The checks use torch's own search; where it has moved, the first call's fallback still applies.)"""
    try:
        import torch._dynamo  # noqa: F401
        import torch._inductor.config  # noqa: F401
    except Exception as error:  # builds without dynamo/inductor raise various errors here
        raise ConfigError(f"compiling is not available in this torch ({error}); leave compile off") from None
    if torch.device(device).type == "cuda":
        _require_triton()
    else:
        _require_cpp_compiler()


def _require_triton() -> None:
    try:
        from torch.utils._triton import has_triton
    except ImportError:
        return
    if not has_triton():
        raise ConfigError("compiling for a GPU needs Triton (pip install triton; on Windows triton-windows); "
                          "it is not installed, so leave compile off or install it")


def _require_cpp_compiler() -> None:
    try:
        from torch._inductor import cpp_builder
        from torch._inductor.exc import InvalidCxxCompiler
        find = cpp_builder.get_cpp_compiler
    except (ImportError, AttributeError):
        return
    try:
        find()
    except InvalidCxxCompiler:
        raise ConfigError("compiling for the CPU needs a C++ compiler (g++ or clang++; on Windows MSVC's cl); none "
                          "was found, so leave compile off or install one") from None


class AttentionCounter:
    """Counts the blocks' joint self-attentions computed and skipped while active (what a step cache saves)."""

    def __init__(self, model):
        self.model = model
        self.computed = 0
        self.forwards = 0

    @property
    def skipped(self) -> int:
        return self.forwards * len(self.model.transformer_blocks) - self.computed

    def __enter__(self):
        self._handles = [block.attn1.to_q.register_forward_hook(self._count_attention) for block in self.model.transformer_blocks]
        self._handles.append(self.model.register_forward_hook(self._count_forward))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def _count_attention(self, *_):
        self.computed += 1

    def _count_forward(self, *_):
        self.forwards += 1
