"""Each memory option against the plain path on the tiny model (on the GPU when there is one)."""

import pytest
import torch
from pipeline_models import make_tiny_model, make_tiny_vae

from mtv_core.errors import ConfigError
from mtv_core.models.fp8 import FP8_DTYPE, FP8Linear, convert_linears_to_fp8
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions, SegmentGenerator, SegmentInputs, prepare_model
from mtv_core.pipeline.memory import BlockSwap

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TEXT = torch.randn(1, 226, 32, generator=torch.Generator().manual_seed(9))


def _segment(memory: MemoryOptions, features, prefix=None):
    model, vae = make_tiny_model(), make_tiny_vae()
    swap = prepare_model(model, memory)
    generator = SegmentGenerator(model, vae, GenerationConfig(steps=2, seed=1), memory, swap)
    window = {name: value[None] for name, value in features.flat_window(0, 49).items()}
    return generator.run(SegmentInputs(TEXT, window, prefix), seed=1), model, swap


@pytest.fixture(scope="module")
def plain(features):
    return _segment(MemoryOptions(device=DEVICE, offload_audio_projection=False), features)[0]


@pytest.mark.parametrize("options", [
    dict(offload_audio_projection=True),
    dict(offload_components=True),
    dict(block_swap=1),
    dict(block_swap=2, offload_components=True),
])
def test_weight_placement_options_match_the_plain_path(options, features, plain):
    out, model, swap = _segment(MemoryOptions(device=DEVICE, **options), features)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    if options.get("offload_components"):
        assert all(p.device.type == "cpu" for p in model.parameters())
    if options.get("offload_audio_projection"):
        assert all(p.device.type == "cpu" for p in model.audio_encoders.parameters())
    if swap is not None:
        assert swap.uploads == 2 * options["block_swap"]  # every swapped block streamed in at each of 2 steps
        assert all(p.device.type == "cpu" for block in swap.blocks for p in block.parameters())


def test_block_swap_is_generic_and_checks_its_count():
    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer_blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(3)])

        def forward(self, x):
            for block in self.transformer_blocks:
                x = block(x)
            return x
    model, x = Stack(), torch.randn(2, 4)
    expected = model(x)
    swap = BlockSwap(model, 3, DEVICE)
    torch.testing.assert_close(model(x.to(DEVICE)).cpu(), expected)
    assert swap.uploads == 3
    swap.remove()
    with pytest.raises(ConfigError, match="block swap count 4 is out of range; use 0..3"):
        BlockSwap(model, 4, DEVICE)
    with pytest.raises(ConfigError, match="needs a model with a `transformer_blocks`"):
        BlockSwap(torch.nn.Linear(2, 2), 1, DEVICE)


def test_fp8_linear_stores_fp8_and_computes_in_the_input_precision():
    linear = torch.nn.Linear(64, 32)
    fp8 = FP8Linear(linear)
    assert fp8.weight_fp8.dtype == FP8_DTYPE
    x = torch.randn(5, 64)
    error = (fp8(x) - linear(x)).abs().max() / linear(x).abs().max()
    assert error < 0.05
    assert fp8(x.double()).dtype == torch.float64


def test_fp8_model_output_is_close_to_the_plain_model(features):
    model, fp8_model = make_tiny_model(), make_tiny_model()
    assert convert_linears_to_fp8(fp8_model.transformer_blocks) > 0
    x = torch.randn(1, 13, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    window = {name: value[None] for name, value in features.flat_window(0, 49).items()}
    with torch.no_grad():
        outputs = [m(x, TEXT, torch.tensor([700]), audio_tokens=m.project_audio(window)) for m in (model, fp8_model)]
    relative = (outputs[1] - outputs[0]).norm() / outputs[0].norm()
    assert 0 < relative < 0.05


def test_fp8_segment_is_close_to_the_plain_segment(features, plain):
    out = _segment(MemoryOptions(device=DEVICE, fp8=True), features)[0]
    assert (out - plain).abs().mean() < 0.02
