import pytest
import torch
from pipeline_models import WindowedFeatures, make_request, make_session

from mtv_core.errors import GenerationError
from mtv_core.pipeline.guidance import GuidanceScales
from mtv_core.pipeline.pauses import pause_latent_frames


def _levels(spoken_frames, frames: int = 49, level: float = -20.0) -> torch.Tensor:
    levels = torch.full((frames,), -200.0)
    levels[list(spoken_frames)] = level
    return levels


def test_a_latent_frame_is_a_pause_when_none_of_its_frames_is_within_a_quarter_second_of_speech():
    # Speech in frames 20-22 reaches frames 14-28; latent frame j holds frames 4j-3..4j: 4 (13-16) .. 7 (25-28).
    paused = pause_latent_frames(_levels(range(20, 23)), 13)
    assert paused.tolist() == [j not in (4, 5, 6, 7) for j in range(13)]
    # Frame 0 reaches frames 0-6: latent frames 0 (frame 0), 1 (1-4) and 2 (5-8).
    assert pause_latent_frames(_levels([0]), 13).tolist() == [j > 2 for j in range(13)]
    assert pause_latent_frames(_levels(range(49), level=-45.0), 13).sum() == 0  # at the gate level: speech
    assert pause_latent_frames(_levels(range(49), level=-45.1), 13).all()  # below it: leakage, a pause
    with pytest.raises(ValueError, match="give \\(49,\\)"):
        pause_latent_frames(torch.zeros(48), 13)


def _pausing_session(tiny_model, tiny_vae, scale=1.0):
    from dataclasses import replace

    session = make_session(tiny_model, tiny_vae)
    session.generator.config = replace(session.config, guidance=GuidanceScales(speech_in_pauses=scale))
    return session


def test_each_segment_samples_with_the_pauses_of_its_own_frames(tiny_model, tiny_vae, features, monkeypatch):
    levels = _levels(range(60, 70), frames=120)  # segment 1 starts at frame 44: speech in its frames 16-25
    request = make_request(WindowedFeatures(features.per_stream, speech_levels=levels), 93)
    session, seen = _pausing_session(tiny_model, tiny_vae), []
    original = session.generator.denoise_job
    monkeypatch.setattr(session.generator, "denoise_job", lambda inputs, seed: seen.append(original(inputs, seed)) or seen[-1])
    session.frames(request)
    assert seen[0].pauses.all()  # segment 0, frames 0-48: nobody speaks
    assert seen[1].pauses.tolist() == pause_latent_frames(levels[44:93], 13).tolist()
    assert not seen[1].pauses.all() and seen[1].pauses.any()
    plain = make_session(tiny_model, tiny_vae)
    assert plain.generator.denoise_job(session._inputs(request, plain.plan(request).segments[1], None), 0).pauses is None


def test_pauses_in_the_guidance_are_part_of_the_fingerprint_and_need_levels(tiny_model, tiny_vae, features):
    levels = _levels(range(60, 70), frames=120)
    request = make_request(WindowedFeatures(features.per_stream, speech_levels=levels), 93)
    moved = make_request(WindowedFeatures(features.per_stream, speech_levels=levels.roll(10)), 93)
    plain, pausing = make_session(tiny_model, tiny_vae), _pausing_session(tiny_model, tiny_vae)
    assert plain.fingerprint(request) == plain.fingerprint(moved)  # without pauses the levels decide nothing
    assert len({plain.fingerprint(request), pausing.fingerprint(request), pausing.fingerprint(moved),
                _pausing_session(tiny_model, tiny_vae, 2.0).fingerprint(request)}) == 4
    without_levels = make_request(features, 93)
    with pytest.raises(GenerationError, match="encode the audio again"):
        pausing.frames(without_levels)
    silent_speech = WindowedFeatures(features.per_stream, flags={"speech": "encoded from silence: not given"})
    assert pausing.frames(make_request(silent_speech, 49)).shape[0] == 49  # speech silent: nothing to tell apart
