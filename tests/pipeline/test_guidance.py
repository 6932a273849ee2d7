from dataclasses import replace

import pytest
import torch

from mtv_core.errors import ConfigError
from mtv_core.pipeline.guidance import GuidanceScales, GuidedModel


@pytest.fixture(scope="module")
def inputs(tiny_model, features):
    window = {name: value[None] for name, value in features.flat_window(0, 49).items()}
    with torch.no_grad():
        tokens = tiny_model.project_audio(window)
        null = tiny_model.project_audio({k: torch.zeros_like(v) for k, v in window.items()})
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 13, 16, 4, 6, generator=g)
    text = torch.randn(1, 226, 32, generator=g)
    mask = torch.zeros(1, 13, dtype=torch.bool)
    mask[:, :2] = True
    return x, text, tokens, null, mask


def _branch(model, x, text, tokens, null, mask, conditions, t=500):
    audio = {name: tokens[name] if name in conditions else null[name] for name in tokens}
    text_input = text if "text" in conditions else torch.zeros_like(text)
    with torch.no_grad():
        return model(x, text_input, torch.tensor([t]), audio_tokens=audio, clean_mask=mask)


NESTED = ((), ("text",), ("text", "speech"), ("text", "speech", "effects"), ("text", "speech", "effects", "music"))


def _every_branch(model, inputs, t=500) -> list:
    """e0 .. e4, each from a forward of its own."""
    return [_branch(model, *inputs, set(conditions), t=t) for conditions in NESTED]


def _batch_sizes(model):
    sizes = []
    handle = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return sizes, handle


def test_nested_guidance_equals_the_formula_from_separate_forwards(tiny_model, inputs):
    x, text, tokens, null, mask = inputs
    e0 = _branch(tiny_model, *inputs, set())
    e1 = _branch(tiny_model, *inputs, {"text"})
    e2 = _branch(tiny_model, *inputs, {"text", "speech"})
    e3 = _branch(tiny_model, *inputs, {"text", "speech", "effects"})
    e4 = _branch(tiny_model, *inputs, {"text", "speech", "effects", "music"})
    s_text, s_speech, s_effects, s_music = 2.0, 5.0, 3.0, 1.5
    expected = e0 + s_text * (e1 - e0) + s_speech * (e2 - e1) + s_effects * (e3 - e2) + s_music * (e4 - e3)
    assert (e4 - e3).abs().max() > 1e-4 and (e3 - e2).abs().max() > 1e-4  # every stream matters

    sizes, handle = _batch_sizes(tiny_model)
    guided = GuidedModel(tiny_model, text, tokens, null, GuidanceScales(s_text, s_speech, s_effects, s_music), mask)
    out = guided(x, 500)
    handle.remove()
    assert sizes == [5]  # one batched forward
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_equal_scales_collapse_to_the_official_joint_cfg_in_two_branches(tiny_model, inputs):
    x, text, tokens, null, mask = inputs
    e0 = _branch(tiny_model, *inputs, set())
    e4 = _branch(tiny_model, *inputs, {"text", "speech", "effects", "music"})
    sizes, handle = _batch_sizes(tiny_model)
    out = GuidedModel(tiny_model, text, tokens, null, GuidanceScales.joint(3.5), mask)(x, 500)
    handle.remove()
    assert sizes == [2]
    torch.testing.assert_close(out, e0 + 3.5 * (e4 - e0), atol=1e-4, rtol=1e-4)


def test_text_scale_one_drops_the_unconditional_branch(tiny_model, inputs):
    x, text, tokens, null, mask = inputs
    e1 = _branch(tiny_model, *inputs, {"text"})
    e4 = _branch(tiny_model, *inputs, {"text", "speech", "effects", "music"})
    sizes, handle = _batch_sizes(tiny_model)
    out = GuidedModel(tiny_model, text, tokens, null, GuidanceScales(1.0, 4.0, 4.0, 4.0), mask)(x, 500)
    handle.remove()
    assert sizes == [2]
    torch.testing.assert_close(out, e1 + 4.0 * (e4 - e1), atol=1e-4, rtol=1e-4)


def test_a_silent_stream_is_guided_at_the_text_scale(tiny_model, inputs):
    """Effects encoded from silence: no effects push of its own (e3 - e2 at the text scale, one branch fewer)."""
    x, text, tokens, null, mask = inputs
    e0, e1, e2, e3, e4 = _every_branch(tiny_model, inputs)
    scales = GuidanceScales(3.5, 8.0, 12.0, 3.5)
    sizes, handle = _batch_sizes(tiny_model)
    out = GuidedModel(tiny_model, text, tokens, null, scales, mask, silent=frozenset({"effects"}))(x, 500)
    handle.remove()
    assert sizes == [4]
    expected = e0 + 3.5 * (e1 - e0) + 8.0 * (e2 - e1) + 3.5 * (e3 - e2) + 3.5 * (e4 - e3)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    assert scales.for_silent({"speech", "music"}) == GuidanceScales(3.5, 3.5, 12.0, 3.5)
    assert scales.for_silent({"speech"}, streams={"speech", "speech2"}) == scales  # Person2 still speaks
    assert scales.for_silent({"speech", "speech2"}, streams={"speech", "speech2"}).speech == 3.5
    assert GuidanceScales.joint(3.5).for_silent({"speech", "effects", "music"}) == GuidanceScales.joint(3.5)


def test_a_silent_scale_of_zero_takes_the_silent_streams_push_out(tiny_model, inputs):
    """silent=0: wav2vec(silence) still conditions the later branches, but its step from the null input adds nothing."""
    x, text, tokens, null, mask = inputs
    e0, e1, e2, e3, e4 = _every_branch(tiny_model, inputs)
    scales = GuidanceScales(3.5, 8.0, 3.0, 3.5, silent=0.0)
    out = GuidedModel(tiny_model, text, tokens, null, scales, mask, silent=frozenset({"effects"}))(x, 500)
    expected = e0 + 3.5 * (e1 - e0) + 8.0 * (e2 - e1) + 3.5 * (e4 - e3)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    assert scales.for_silent(set()) == scales and scales.for_silent({"music"}).music == 0.0


def test_guidance_until_runs_the_fully_conditioned_branch_alone_below_the_guided_part(tiny_model, inputs):
    x, text, tokens, null, mask = inputs
    every = ("text", "speech", "effects", "music")
    scales = GuidanceScales(2.0, 5.0, 3.0, 1.5, until=0.6)  # guided from timestep 400 up
    guided = GuidedModel(tiny_model, text, tokens, null, scales, mask)
    sizes, handle = _batch_sizes(tiny_model)
    outs = {t: guided(x, t) for t in (400, 399, 83)}
    handle.remove()
    assert sizes == [5, 1, 1]
    official = GuidedModel(tiny_model, text, tokens, null, GuidanceScales(2.0, 5.0, 3.0, 1.5), mask)
    torch.testing.assert_close(outs[400], official(x, 400), atol=1e-5, rtol=1e-5)
    for t in (399, 83):
        alone = _branch(tiny_model, *inputs, set(every), t=t)
        torch.testing.assert_close(outs[t], alone, atol=1e-5, rtol=1e-5)
        assert (official(x, t) - alone).abs().max() > 1e-3  # guiding that step would have changed it
    nothing = GuidedModel(tiny_model, text, tokens, null, GuidanceScales(2.0, 5.0, 3.0, 1.5, until=0.0), mask)
    torch.testing.assert_close(nothing(x, 999), _branch(tiny_model, *inputs, set(every), t=999), atol=1e-5, rtol=1e-5)
    assert GuidanceScales(until=1.0).until is None and GuidanceScales(until={"speech": 1}).until is None


def test_each_condition_stops_being_guided_at_its_own_point(tiny_model, inputs):
    """Speech stops at 0.6 (timestep 400), text and music at 0.2 (800); effects is guided throughout."""
    x, text, tokens, null, mask = inputs
    e0, e1, e2, e3, e4 = _every_branch(tiny_model, inputs, 300)
    scales = GuidanceScales(2.0, 5.0, 3.0, 1.5, until={"speech": 0.6, "text": 0.2, "music": 0.2})
    assert scales.stopped_at(999) == frozenset() and scales.stopped_at(500) == {"text", "music"}
    assert scales.stopped_at(300) == {"text", "speech", "music"} and len(scales.phases()) == 3
    out = GuidedModel(tiny_model, text, tokens, null, scales, mask)(x, 300)
    torch.testing.assert_close(out, e4 + 2.0 * (e3 - e2), atol=1e-4, rtol=1e-4)


def test_speech_in_pauses_guides_speech_at_its_own_scale_in_those_latent_frames_alone(tiny_model, inputs):
    """Latent frames 3..7 are a pause: speech at 1 there, 5 elsewhere, from the same five branches in one forward."""
    x, text, tokens, null, mask = inputs
    e0, e1, e2, e3, e4 = _every_branch(tiny_model, inputs)
    pauses = torch.arange(13).ge(3) & torch.arange(13).lt(8)  # latent frames 3..7
    scales = GuidanceScales(2.0, 5.0, 3.0, 1.5, speech_in_pauses=1.0)
    sizes, handle = _batch_sizes(tiny_model)
    out = GuidedModel(tiny_model, text, tokens, null, scales, mask, pauses=pauses)(x, 500)
    handle.remove()
    assert sizes == [5]
    spoken = e0 + 2.0 * (e1 - e0) + 5.0 * (e2 - e1) + 3.0 * (e3 - e2) + 1.5 * (e4 - e3)
    paused = e0 + 2.0 * (e1 - e0) + 1.0 * (e2 - e1) + 3.0 * (e3 - e2) + 1.5 * (e4 - e3)
    torch.testing.assert_close(out[:, pauses], paused[:, pauses], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[:, ~pauses], spoken[:, ~pauses], atol=1e-4, rtol=1e-4)
    assert (spoken - paused)[:, pauses].abs().max() > 1e-3  # the pause scale changed those frames

    nowhere = GuidedModel(tiny_model, text, tokens, null, scales, mask, pauses=torch.zeros(13, dtype=torch.bool))
    torch.testing.assert_close(nowhere(x, 500), spoken, atol=1e-4, rtol=1e-4)
    unset = GuidedModel(tiny_model, text, tokens, null, GuidanceScales(2.0, 5.0, 3.0, 1.5), mask, pauses=pauses)
    torch.testing.assert_close(unset(x, 500), spoken, atol=1e-4, rtol=1e-4)


def test_speech_pause_keep_gives_speech_its_own_scale_back_where_it_pushes_hardest_in_each_pause_frame(tiny_model, inputs):
    x, text, tokens, null, mask = inputs
    e0, e1, e2, e3, e4 = _every_branch(tiny_model, inputs)
    pauses = torch.arange(13).ge(3) & torch.arange(13).lt(8)  # latent frames 3..7
    scales = GuidanceScales(2.0, 5.0, 3.0, 1.5, speech_in_pauses=1.0, speech_pause_keep=0.25)  # 6 of 4 x 6 positions
    out = GuidedModel(tiny_model, text, tokens, null, scales, mask, pauses=pauses)(x, 500)
    spoken = e0 + 2.0 * (e1 - e0) + 5.0 * (e2 - e1) + 3.0 * (e3 - e2) + 1.5 * (e4 - e3)
    paused = spoken - 4.0 * (e2 - e1)
    strength = (e2 - e1).norm(dim=2)[0]  # (13, 4, 6)
    for frame in range(13):
        if not pauses[frame]:
            torch.testing.assert_close(out[0, frame], spoken[0, frame], atol=1e-4, rtol=1e-4)
            continue
        hardest = torch.zeros(24, dtype=torch.bool)
        hardest[strength[frame].flatten().topk(6).indices] = True
        hardest = hardest.view(4, 6)
        torch.testing.assert_close(out[0, frame][:, hardest], spoken[0, frame][:, hardest], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out[0, frame][:, ~hardest], paused[0, frame][:, ~hardest], atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="speech pause keep 1.5 is out of range"):
        GuidanceScales(speech_in_pauses=1.0, speech_pause_keep=1.5)
    with pytest.raises(ConfigError, match="set without a speech scale in pauses"):
        GuidanceScales(speech_pause_keep=0.1)


def test_speech_in_pauses_yields_to_stopped_and_silent_speech(tiny_model, inputs):
    x, text, tokens, null, mask = inputs
    scales = GuidanceScales(2.0, 5.0, 3.0, 1.5, speech_in_pauses=0.0, until={"speech": 0.6})
    assert scales.without({"speech"}).in_pauses() == scales.without({"speech"})  # stopped: 1 in pauses too
    assert scales.without({"text"}).in_pauses().speech == 0.0
    assert scales.for_silent({"speech"}).in_pauses() == scales.for_silent({"speech"})  # silent: the silent scale
    pauses = torch.ones(13, dtype=torch.bool)
    stopped = GuidedModel(tiny_model, text, tokens, null, scales, mask, pauses=pauses)(x, 300)
    plain = GuidedModel(tiny_model, text, tokens, null, replace(scales, speech_in_pauses=None), mask)(x, 300)
    torch.testing.assert_close(stopped, plain, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="speech_in_pauses guidance scale -1 is out of range"):
        GuidanceScales(speech_in_pauses=-1)


@pytest.mark.parametrize("until, problem", [(-0.1, "out of range"), (1.5, "out of range"), ("0.6", "out of range"),
                                            (True, "out of range"), (float("nan"), "out of range"),
                                            ({"speech": 2.0}, "for speech is out of range"),
                                            ({"voice": 0.5}, "names 'voice', which is no condition")])
def test_bad_guidance_until_is_named(until, problem):
    with pytest.raises(ConfigError, match=f"guidance until .*{problem}"):
        GuidanceScales(until=until)


@pytest.mark.parametrize("scales, name", [((-1, 3, 3, 3), "text"), ((3, 31, 3, 3), "speech"),
                                          ((3, 3, float("nan"), 3), "effects"), ((3, 3, 3, "7"), "music"),
                                          ((3, 3, 3, 3, -0.5), "silent")])
def test_out_of_range_scales_are_named(scales, name):
    with pytest.raises(ConfigError, match=f"{name} guidance scale .* out of range"):
        GuidanceScales(*scales).validate()


def test_second_speaker_turns_on_with_speech():
    from mtv_core.pipeline.guidance import branch_inputs
    names = ("speech", "speech2", "effects", "music")
    tokens = {name: torch.full((1,), 1.0) for name in names}
    null = {name: torch.full((1,), 0.0) for name in names}
    text = torch.ones(1, 2, 2)
    conditioned = {level: [n for n in names if branch_inputs(level, text, tokens, null)[1][n].item() == 1.0]
                   for level in range(5)}
    assert conditioned == {0: [], 1: [], 2: ["speech", "speech2"], 3: ["speech", "speech2", "effects"], 4: list(names)}
    assert branch_inputs(0, text, tokens, null)[0].abs().sum() == 0 and torch.equal(branch_inputs(1, text, tokens, null)[0], text)
