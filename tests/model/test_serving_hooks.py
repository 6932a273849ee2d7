"""Serving concerns live in hooks around an unchanged model: installing and removing them leaves the plain model."""

import torch

from mtv_core import testing
from mtv_core.hooks.row_parallel import RowParallel, split_rows
from mtv_core.models.attention_processor import MTVSelfAttnProcessor
from mtv_core.pipeline.speed import StepCache, step_cache


def _hooks(model) -> dict:
    return {name: list(module._diffusers_hook.hooks) for name, module in model.named_modules()
            if getattr(module, "_diffusers_hook", None) is not None and module._diffusers_hook.hooks}


def _prediction(model) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 13, 16, 4, 6, generator=generator)
    text = torch.randn(1, 226, 32, generator=generator)
    with torch.no_grad():
        return model(latents, text, torch.tensor([500]))


def test_row_parallel_hooks_follow_the_plan_and_leave_no_trace():
    model = testing.tiny_mtv_model(sample_height=4, sample_width=6)
    keys, alone = set(model.state_dict()), _prediction(model)
    split_rows(model, RowParallel(None, rank=0, size=2, group=None))
    assert _hooks(model) == {name: ["mtv_row_parallel"] for name in ("rope", "transformer_blocks.0", "proj_out")}
    assert not any(type(block.attn1.processor) is MTVSelfAttnProcessor for block in model.transformer_blocks)
    split_rows(model, None)
    assert _hooks(model) == {}
    assert all(type(block.attn1.processor) is MTVSelfAttnProcessor for block in model.transformer_blocks)
    assert set(model.state_dict()) == keys
    torch.testing.assert_close(_prediction(model), alone, atol=0, rtol=0)


def test_the_step_cache_hook_lives_for_one_segment():
    model = testing.tiny_mtv_model(sample_height=4, sample_width=6)
    with step_cache(model, StepCache.parse("fbc")):
        assert "mtv_cache_per_conditioning" in model._diffusers_hook.hooks
        _prediction(model)
    assert _hooks(model) == {} and not model.is_cache_enabled
