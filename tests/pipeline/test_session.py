import pytest
import torch
from pipeline_models import make_request, make_session

from mtv_core.errors import GenerationError
from mtv_core.pipeline import session as session_module
from mtv_core.pipeline.prompt_schedule import PromptSchedule
from mtv_core.pipeline.sampling import GenerationInterrupted
from mtv_core.pipeline.session import RenderRequest


def _counting(monkeypatch, name: str) -> list:
    """Replaces session.<name> with a wrapper that records each call."""
    calls, original = [], getattr(session_module, name)
    monkeypatch.setattr(session_module, name, lambda *args: calls.append(args) or original(*args))
    return calls


def test_plan_and_start_image_are_worked_out_once_per_request(tiny_model, tiny_vae, features, monkeypatch, tmp_path):
    plans, fits = _counting(monkeypatch, "plan_for_duration"), _counting(monkeypatch, "fit_start_image")
    session = make_session(tiny_model, tiny_vae)
    request = make_request(features, 49, start_image=torch.rand(20, 30, 3, generator=torch.Generator().manual_seed(0)))
    session.frames(request, tmp_path)  # plan, fingerprint, work folder, segments
    session.fingerprint(request)
    assert session.start_pixels(request).shape == (3, 1, 32, 48)
    assert (len(plans), len(fits)) == (1, 1)
    session.plan(make_request(features, 60))
    assert (len(plans), len(fits)) == (2, 1)  # a new request without a start image


def test_fingerprint_changes_with_the_request_and_only_with_it(tiny_model, tiny_vae, features):
    session = make_session(tiny_model, tiny_vae)
    request = make_request(features, 60)
    same = make_request(features, 60)
    assert session.fingerprint(request) == session.fingerprint(same) == session.fingerprint(request)
    others = [make_request(features, 61), make_request(features, 60, text=request.text + 1),
              make_request(features, 60, start_image=torch.zeros(32, 48, 3)),
              make_request(features, 60, schedule=PromptSchedule.single("b"))]
    assert len({session.fingerprint(request), *map(session.fingerprint, others)}) == 1 + len(others)
    assert make_session(tiny_model, tiny_vae, seed=1).fingerprint(request) != session.fingerprint(request)


def test_where_guidance_stops_is_part_of_the_fingerprint(tiny_model, tiny_vae, features):
    from dataclasses import replace

    from mtv_core.pipeline.guidance import GuidanceScales

    session, request = make_session(tiny_model, tiny_vae), make_request(features, 60)

    def stopping(until):
        other = make_session(tiny_model, tiny_vae)
        other.generator.config = replace(other.config, guidance=GuidanceScales(until=until))
        return other.fingerprint(request)

    assert stopping(None) == stopping(1.0) == stopping({"speech": 1.0}) == session.fingerprint(request)
    assert len({session.fingerprint(request), stopping(0.6), stopping({"speech": 0.6}), stopping({"speech": 0.5})}) == 4


def test_segments_resume_from_the_work_folder(tiny_model, tiny_vae, features, tmp_path):
    request = make_request(features, 150)
    assert len(make_session(tiny_model, tiny_vae).plan(request).segments) == 4
    reference = make_session(tiny_model, tiny_vae).frames(request)

    steps_done = []
    interrupted = make_session(tiny_model, tiny_vae, progress=lambda step, total: steps_done.append(step),
                               interrupt=lambda: steps_done and steps_done[-1] >= 2 * 2 + 1)  # inside segment 2
    with interrupted.work_folder(request, tmp_path) as store, pytest.raises(GenerationInterrupted):
        list(interrupted.segments(request, store))
    assert store.completed() == 2

    resumed = make_session(tiny_model, tiny_vae)
    seeds = []
    original = resumed.generator.run
    resumed.generator.run = lambda inputs, seed, *args: seeds.append(seed) or original(inputs, seed, *args)
    frames = resumed.frames(request, tmp_path)
    assert seeds == [2, 3]  # only the missing segments ran
    assert torch.equal(frames, reference)


def test_frames_are_the_segments_joined_and_cut_to_the_audio(tiny_model, tiny_vae, features):
    request = make_request(features, 60)
    segments = list(make_session(tiny_model, tiny_vae).segments(request))
    frames = make_session(tiny_model, tiny_vae).frames(request)
    assert [len(kept) for kept in segments] == [49, 44]
    assert frames.shape == (60, 32, 48, 3) and torch.equal(frames, torch.cat(segments)[:60])


def test_a_segment_outside_the_plan_is_refused_before_sampling(tiny_model, tiny_vae, features):
    session = make_session(tiny_model, tiny_vae, interrupt=lambda: pytest.fail("sampling started"))
    with pytest.raises(GenerationError, match=r"segment 2 does not exist: the audio has 2 segments \(0\.\.1\)"):
        session.segment(make_request(features, 60), 2)


def test_a_request_is_checked_when_made_and_audio_must_last_a_frame(tiny_model, tiny_vae, features):
    with pytest.raises(GenerationError, match="2 text embeddings for 1 prompts"):
        RenderRequest(torch.zeros(2, 226, 32), PromptSchedule.single("a"), features, 2.0)
    with pytest.raises(GenerationError, match="the audio lasts 0.010s, shorter than one video frame"):
        make_session(tiny_model, tiny_vae).plan(RenderRequest(torch.zeros(1, 226, 32), PromptSchedule.single("a"),
                                                              features, 0.01))
