"""Step caches (diffusers' caches on the MTV model, kept audio-aware) and their option parsing."""

import pytest
import torch
from pipeline_models import make_tiny_model, make_tiny_vae
from torch._dynamo.utils import counters

from mtv_core import testing
from mtv_core.errors import ConfigError
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions, SegmentGenerator, SegmentInputs, prepare_model
from mtv_core.pipeline.speed import AttentionCounter, StepCache, step_cache

TEXT = torch.randn(1, 226, 32, generator=torch.Generator().manual_seed(9))


@pytest.fixture(scope="module")
def model():
    return make_tiny_model().eval()


@pytest.fixture(scope="module")
def inputs(model):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 13, 16, 4, 6, generator=generator)
    text = torch.randn(2, 226, 32, generator=generator)
    features = {name: torch.randn(2, 49, model.config.audio_feature_dim, generator=generator) for name in model.audio_streams}
    with torch.no_grad():
        tokens = model.project_audio(features)
    return latents, text, tokens


def _with_frame_changed(tokens: dict, stream: str, frame: int) -> dict:
    changed = {name: value.clone() for name, value in tokens.items()}
    changed[stream][:, frame] += 1.0
    return changed


@torch.no_grad()
def test_the_cache_restarts_when_the_audio_changes(model, inputs):
    latents, text, tokens = inputs
    timestep = torch.tensor([500, 500])
    later = latents + 0.05 * torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    other_audio = _with_frame_changed(tokens, "speech", 5)
    with step_cache(model, StepCache.parse("fbc:1.0")):  # threshold 1: reuse whenever allowed
        model(latents, text, timestep, audio_tokens=tokens)
        reused = model(later, text, timestep, audio_tokens=tokens)
        model(latents, text, timestep, audio_tokens=tokens)
        fresh = model(later, text, timestep, audio_tokens=other_audio)
    assert (reused - model(later, text, timestep, audio_tokens=tokens)).abs().max() > 1e-3  # the cache was in use
    uncached = model(later, text, timestep, audio_tokens=other_audio)
    torch.testing.assert_close(fresh, uncached, atol=1e-6, rtol=1e-6)


def _segment(model, features: dict, cache: str | None, steps: int = 6) -> torch.Tensor:
    config = GenerationConfig(steps=steps, seed=1, cache=StepCache.parse(cache))
    generator = SegmentGenerator(model, make_tiny_vae(), config, MemoryOptions(device="cpu"))
    return generator.sample_latents(SegmentInputs(TEXT, features, None), seed=1)


@pytest.fixture(scope="module")
def window(model):
    generator = torch.Generator().manual_seed(3)
    return {name: torch.randn(1, 49, model.config.audio_feature_dim, generator=generator) for name in model.audio_streams}


@pytest.mark.parametrize("cache", ["fbc:0.35", "taylorseer:2"])
def test_changing_one_latent_frames_audio_changes_that_frame_under_caching(model, window, cache):
    changed = {name: value.clone() for name, value in window.items()}
    changed["effects"][:, 20:24] += 3.0  # video frames 20..23 = latent frame 6
    with AttentionCounter(model) as counter:
        before, after = _segment(model, window, cache), _segment(model, changed, cache)
    assert counter.skipped > 0
    change = (after - before).abs().mean(dim=(0, 2, 3, 4))
    assert change[6] > 1e-3
    assert change[6] == change.max()


@pytest.mark.parametrize("cache", ["fbc:0.001", "taylorseer:1"])
def test_a_cache_that_never_reuses_matches_the_uncached_run(model, window, cache):
    with AttentionCounter(model) as counter:
        cached = _segment(model, window, cache)
    assert counter.skipped == 0 and counter.computed == 6 * model.config.num_layers
    torch.testing.assert_close(cached, _segment(model, window, None), atol=1e-6, rtol=1e-6)


def test_taylorseer_computes_on_its_interval(model, window):
    with AttentionCounter(model) as counter:
        _segment(model, window, "taylorseer:2", steps=8)
    # steps 0 and 1 warm up, then every second step from step 3: 0, 1, 3, 5, 7
    assert counter.computed == 5 * model.config.num_layers and counter.skipped == 3 * model.config.num_layers


def test_no_hooks_remain_after_a_segment(model, window):
    _segment(model, window, "fbc:0.35")
    assert not model.is_cache_enabled
    assert all(not getattr(block, "_diffusers_hook", None) or not block._diffusers_hook.hooks
               for block in model.transformer_blocks)


@pytest.mark.parametrize("text, cache", [("fbc", StepCache("fbc", 0.15)), ("FBC:0.2", StepCache("fbc", 0.2)),
                                         ("taylorseer:3", StepCache("taylorseer", 3)), ("taylorseer", StepCache("taylorseer", 2)),
                                         ("none", None), ("", None)])
def test_cache_names_parse(text, cache):
    assert StepCache.parse(text) == cache


@pytest.mark.parametrize("text, words", [("teacache", "unknown"), ("fbc:2", "0.001..1"), ("fbc:x", "0.001..1"),
                                         ("taylorseer:1.5", "whole"), ("taylorseer:0", "1..20"), ("fbc:nan", "0.001..1")])
def test_bad_cache_names_say_what_is_accepted(text, words):
    with pytest.raises(ConfigError, match=words):
        StepCache.parse(text)


def test_the_cache_is_part_of_the_render_fingerprint():
    assert GenerationConfig(cache=StepCache.parse("fbc")).as_dict() != GenerationConfig().as_dict()


def _compiled_segment(features, memory: MemoryOptions, cache=None) -> tuple[torch.Tensor, torch.Tensor]:
    model, vae = make_tiny_model(), make_tiny_vae()
    swap = prepare_model(model, memory)
    generator = SegmentGenerator(model, vae, GenerationConfig(steps=3, seed=1, cache=StepCache.parse(cache)), memory, swap)
    return generator.sample_latents(SegmentInputs(TEXT, features, None), seed=1)


def test_compiled_blocks_match_eager_with_block_swap_and_fp8_in_one_graph(window):
    torch._dynamo.reset()
    counters.clear()
    options = dict(device="cpu", fp8=True, block_swap=1)
    eager = _compiled_segment(window, MemoryOptions(**options))
    compiled = _compiled_segment(window, MemoryOptions(**options, compile=True), cache="fbc:0.35")
    again = _compiled_segment(window, MemoryOptions(**options), cache="fbc:0.35")
    torch.testing.assert_close(compiled, again, atol=1e-4, rtol=1e-4)
    assert (compiled - eager).abs().max() > 0  # the cache did change something, so both paths ran
    assert sum(counters["graph_break"].values()) == 0
    assert counters["stats"]["unique_graphs"] == 1  # one graph for every block, every step


def test_a_failing_compiler_falls_back_to_the_uncompiled_blocks(window, monkeypatch, capsys):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    original = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: original(fn, backend=broken_backend))
    torch._dynamo.reset()
    fallen_back = _compiled_segment(window, MemoryOptions(device="cpu", compile=True))
    assert "torch.compile failed" in capsys.readouterr().err
    torch.testing.assert_close(fallen_back, _compiled_segment(window, MemoryOptions(device="cpu")))


def test_compile_without_a_cpp_compiler_is_refused_before_loading(monkeypatch):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-compiler-here",))
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        MemoryOptions(device="cpu", compile=True)


def test_fbc_on_a_one_block_model_is_refused_with_the_fix():
    """diffusers' first-block cache fails with an IndexError when no block follows the first."""
    one_block = testing.tiny_mtv_model(num_layers=1, sample_height=4, sample_width=6)
    with pytest.raises(ConfigError, match="the first-block cache needs at least 2 transformer blocks .* this model has 1"):
        with step_cache(one_block, StepCache.parse("fbc")):
            pass
    with step_cache(one_block, StepCache.parse("taylorseer")):
        pass
