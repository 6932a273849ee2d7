import pytest
import torch
from pipeline_models import make_request, make_session

from mtv_core.errors import ConfigError
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions, SegmentGenerator
from mtv_core.pipeline.guidance import GuidanceScales
from mtv_core.pipeline.prompt_schedule import PromptSchedule
from mtv_core.pipeline.sampling import GenerationInterrupted
from mtv_core.pipeline.segments import match_colour, plan_segments
from mtv_core.pipeline.vae import encode_frames

TEXT = torch.randn(1, 226, 32, generator=torch.Generator().manual_seed(9))
SCHEDULE = PromptSchedule.single("a")


def _generator(model, vae, seed=0, **kwargs):
    return SegmentGenerator(model, vae, GenerationConfig(steps=2, seed=seed), MemoryOptions(), **kwargs)


class Recorder:
    """Wraps SegmentGenerator.run to record each segment's prefix pixels, prefix latents and output."""

    def __init__(self, generator):
        self.generator, self.calls = generator, []
        original = generator.run

        def run(inputs, seed, *args):
            pixels = original(inputs, seed, *args)
            self.calls.append((seed, inputs.prefix_pixels, generator.last_prefix_latents, pixels))
            return pixels
        generator.run = run


def test_same_seed_gives_identical_frames_and_another_seed_does_not(tiny_model, tiny_vae, features):
    request = make_request(features, 49)
    first = make_session(tiny_model, tiny_vae, 3).frames(request)
    second = make_session(tiny_model, tiny_vae, 3).frames(request)
    other = make_session(tiny_model, tiny_vae, 4).frames(request)
    assert first.shape == (49, 32, 48, 3) and first.dtype == torch.uint8
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("colour_match", [False, True])
def test_clean_prefix_of_each_segment_is_the_encoded_tail_of_the_previous(tiny_model, tiny_vae, features, colour_match):
    session = make_session(tiny_model, tiny_vae, colour_match=colour_match)
    generator = session.generator
    recorder = Recorder(generator)
    frames = session.frames(make_request(features, 100))
    assert frames.shape[0] == 100 and len(recorder.calls) == 3
    assert recorder.calls[0][1] is None and recorder.calls[0][2] is None
    for (_, _, _, previous), (seed, prefix_pixels, prefix_latents, _) in zip(recorder.calls, recorder.calls[1:]):
        assert prefix_pixels.shape == (3, 5, 32, 48)
        assert prefix_latents.shape == (1, 2, 16, 4, 6)
        g = torch.Generator().manual_seed(seed)
        torch.randn(generator.latent_shape(), generator=g)  # the segment's noise is drawn first
        torch.testing.assert_close(prefix_latents, encode_frames(tiny_vae, prefix_pixels[None], g))
    # Segment 1's prefix is segment 0's decoded tail; segment 2's is segment 1's tail as it was kept: as decoded
    # (the official chaining, the default), or after matching its colours to its own prefix.
    assert torch.equal(recorder.calls[1][1], recorder.calls[0][3][:, -5:])
    kept = recorder.calls[1][3]
    if colour_match:
        kept = match_colour(kept, recorder.calls[1][1])
    else:
        assert not torch.allclose(match_colour(kept, recorder.calls[1][1]), kept, atol=1e-3)  # matching would change it
    torch.testing.assert_close(recorder.calls[2][1], kept[:, -5:])


def test_start_image_becomes_one_clean_latent(tiny_model, tiny_vae, features):
    image = torch.rand(32, 48, 3, generator=torch.Generator().manual_seed(0))
    session = make_session(tiny_model, tiny_vae)
    recorder = Recorder(session.generator)
    session.frames(make_request(features, 49, start_image=image))
    assert recorder.calls[0][2].shape == (1, 1, 16, 4, 6)


def test_prompt_schedule_blends_text_by_segment_centre(tiny_model, tiny_vae, features, monkeypatch):
    from mtv_core.pipeline.prompt_schedule import ScheduledPrompt
    schedule = PromptSchedule((ScheduledPrompt("a"), ScheduledPrompt("b", 2.0, 2.0)))
    embeddings = torch.stack([torch.zeros(226, 32), torch.ones(226, 32)])
    session = make_session(tiny_model, tiny_vae)
    texts = []
    original = session.generator.run
    monkeypatch.setattr(session.generator, "run", lambda inputs, *a: texts.append(inputs.text) or original(inputs, *a))
    session.frames(make_request(features, 100, embeddings, schedule))
    # centres: 1.0 s, 2.833 s, 4.667 s -> weight of "b": 0, 0.4167, 1
    assert [round(t.mean().item(), 4) for t in texts] == [0.0, 0.4167, 1.0]


@pytest.mark.parametrize("make, fragment", [
    (lambda: GenerationConfig(steps=0), "steps 0 is out of range"),
    (lambda: GenerationConfig(steps=500), "steps 500"),
    (lambda: GenerationConfig(steps=True), "steps True"),
    (lambda: GenerationConfig(seed=-1), "seed -1"),
    (lambda: GenerationConfig(seed=2**53), "seed 9007199254740992 is out of range"),
    (lambda: GenerationConfig(sampler="euler"), "sampler 'euler'"),
    (lambda: GuidanceScales(text=50), "text guidance scale 50"),
    (lambda: GuidanceScales(music=float("nan")), "music guidance scale nan"),
    (lambda: MemoryOptions(vae_tile_latents=0), "VAE tile 0 is out of range"),
    (lambda: MemoryOptions(device="bogus"), "device 'bogus' is not a device"),
])
def test_bad_values_are_refused_when_the_options_are_made(make, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make()


def test_a_vae_that_does_not_fit_the_model_is_refused(tiny_model):
    from diffusers import AutoencoderKLCogVideoX
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=8, layers_per_block=1,
                                 norm_num_groups=4)
    with pytest.raises(ConfigError, match="8-channel latents but the model takes 16"):
        _generator(tiny_model, vae)


def _stop_after(calls: int):
    """An interrupt callback that asks to stop on its `calls`-th question and counts the questions."""
    asked = []

    def interrupt():
        asked.append(1)
        return len(asked) >= calls
    return interrupt, asked


def test_a_stop_lands_within_one_transformer_block(tiny_model, tiny_vae, features):
    blocks = len(tiny_model.transformer_blocks)
    ran = []
    handles = [block.register_forward_hook(lambda *_: ran.append(1)) for block in tiny_model.transformer_blocks]
    interrupt, asked = _stop_after(3)  # step 0 asks once, then block 0 asks, then block 1 asks and stops
    try:
        with pytest.raises(GenerationInterrupted):
            make_session(tiny_model, tiny_vae, interrupt=interrupt).frames(make_request(features, 49))
    finally:
        for handle in handles:
            handle.remove()
    assert len(asked) == 3 and len(ran) == 1 < blocks  # block 1 never ran: the stop came mid-step


def test_a_stop_lands_within_one_decoder_slice(tiny_model, tiny_vae, features):
    generator = _generator(tiny_model, tiny_vae)
    latents = generator.sample_latents(SegmentInputsFor(features), 0)
    interrupt, asked = _stop_after(2)  # the first VAE slice decodes, the second is refused
    generator.interrupt = interrupt
    with pytest.raises(GenerationInterrupted):
        generator.decode(latents)
    assert len(asked) == 2


def SegmentInputsFor(features):
    from mtv_core.pipeline.generate import SegmentInputs, segment_features

    return SegmentInputs(TEXT, segment_features(features, plan_segments(49).segments[0]), None)


def test_listeners_hear_every_step_preview_and_decoder_slice_across_segments(tiny_model, tiny_vae, features):
    heard = []
    session = make_session(tiny_model, tiny_vae, progress=lambda step, total: heard.append(("step", step, total)),
                       preview=lambda step, total, latents: heard.append(("preview", step, total, latents.shape)),
                       decode_progress=lambda done, total: heard.append(("decode", done, total)))
    session.frames(make_request(features, 60))  # 2 segments of 2 steps
    latents = (1, 13, 16, 4, 6)
    one_segment = lambda offset: [("step", offset, 4), ("preview", offset + 1, 4, latents), ("step", offset + 1, 4),
                                  ("preview", offset + 2, 4, latents), ("step", offset + 2, 4),
                                  *[("decode", done, 6) for done in range(7)]]
    assert heard == one_segment(0) + one_segment(2)
