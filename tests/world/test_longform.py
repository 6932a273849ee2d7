"""Long-form measures on the world's own video and on videos spoiled in known ways: flicker at latent boundaries
and seams, colour drift, the audio-visual offset, every metric per window, mouths at rest; the world's speech
pauses; `evaluate --long-form` end to end."""

import json
from dataclasses import replace

import numpy as np
import pytest

from mtv_core.pipeline.segments import plan_segments
from mtv_lab.cli import main
from mtv_lab.evaluation import evaluate_clip
from mtv_lab.evaluation.longform import av_offset, per_window, resting_mouth_ratio, speech_activity, window_bounds
from mtv_lab.evaluation.temporal import BOUNDARY, SEAM, change_kinds, colour_drift, flicker, flicker_against, time_windows
from mtv_lab.world import WorldSettings, draw_frames, make_clip
from mtv_lab.world.generate import mix
from mtv_lab.world.scene import lifted
from mtv_lab.world.sounds import SAMPLE_RATE

LONG = WorldSettings(seed=3, clips=3, frames=240, speech_pauses=True, kinds=("basic_face", "multi_character", "full_scene"))


def clip(index: int, settings: WorldSettings = LONG):
    spec, stems = make_clip(index, settings)
    return spec, draw_frames(spec), stems


def shifted(frames: np.ndarray, lag: int) -> np.ndarray:
    """The video `lag` frames late (positive) or early (negative), its ends held."""
    if lag > 0:
        return np.concatenate([frames[:1].repeat(lag, axis=0), frames[:-lag]])
    return np.concatenate([frames[-lag:], frames[-1:].repeat(-lag, axis=0)])


def test_changes_are_sorted_by_where_mtv_joins_frames():
    kinds = change_kinds(140)  # segments start at 0, 44 and 88; the later ones keep frames from 49 and 93 on
    assert [frame for frame in range(1, 140) if kinds[frame - 1] == SEAM] == [49, 93, 137]
    assert [frame for frame in range(1, 30) if kinds[frame - 1] == BOUNDARY] == [1, 5, 9, 13, 17, 21, 25, 29]
    assert list(change_kinds(140, plan_segments(140))) == list(change_kinds(140, [49, 93, 137]))
    assert SEAM not in change_kinds(49)


def test_flicker_of_the_truth_against_itself_is_one_and_a_latent_pulse_shows():
    spec, frames, _ = clip(0)
    assert all(value == 1.0 for value in flicker_against(frames, frames)["ratio"].values())
    level = 3  # frames of even latents brighter by `level`, odd ones darker: every boundary (and seam) jumps by 2 levels
    signs = np.where(((np.arange(len(frames)) - 1) // 4) % 2 == 0, 1, -1)
    pulsed = (frames.astype(np.int16) + level * signs[:, None, None, None]).astype(np.uint8)
    truth, spoiled = flicker(frames), flicker(pulsed)
    assert spoiled["within"] == pytest.approx(truth["within"], abs=1e-5)
    assert spoiled["boundary"] - truth["boundary"] == pytest.approx(2 * level, abs=0.15)
    assert spoiled["seam"] - truth["seam"] == pytest.approx(2 * level, abs=0.15)
    assert spoiled["boundary_pulse"] == pytest.approx((truth["boundary"] + 2 * level) / truth["within"], rel=0.03)
    ratio = flicker_against(pulsed, frames)["ratio"]
    assert ratio["within"] == pytest.approx(1.0, abs=1e-5) and ratio["boundary_pulse"] > 3


def test_a_colour_ramp_drifts_by_what_was_injected():
    spec, frames, _ = clip(0)
    red_rise = 8.0  # levels over the whole clip
    ramp = red_rise * np.arange(len(frames)) / (len(frames) - 1)
    drifting = frames.astype(np.float64)
    drifting[..., 0] += ramp[:, None, None]
    drifting = np.round(drifting).astype(np.uint8)
    windows = time_windows(len(frames), spec.fps, 2.0)
    result = colour_drift(drifting, windows, spec.background_boxes, truth=frames)
    centres = np.array([(start + end - 1) / 2 for start, end in windows]) * red_rise / (len(frames) - 1)
    for row, centre in zip(result["windows"], centres):
        assert row["drift"][0] == pytest.approx(centre - centres[0], abs=0.5)
        assert row["against_truth"][0] == pytest.approx(centre, abs=0.5)
        assert max(abs(row["drift"][1]), abs(row["drift"][2])) < 0.01
    assert result["largest"] == pytest.approx(centres[-1] - centres[0], abs=0.5)
    assert colour_drift(frames, windows, spec.background_boxes, truth=frames)["largest_against_truth"] == 0.0


def test_a_wall_that_follows_the_truths_own_change_does_not_drift():
    spec, frames, _ = clip(0)
    half = len(frames) // 2
    changed = frames.astype(np.int16)
    changed[half:, ..., 2] += 30  # the truth's wall turns bluer half-way (as with a mood change)
    changed = changed.clip(0, 255).astype(np.uint8)
    windows = time_windows(len(frames), spec.fps, 1.0)
    assert colour_drift(changed, windows, spec.background_boxes, truth=changed)["largest"] == 0.0
    kept = colour_drift(frames, windows, spec.background_boxes, truth=changed)
    assert kept["largest"] > 20 and kept["largest_against_truth"] > 20
    assert colour_drift(changed, windows, spec.background_boxes)["largest"] > 20  # without the truth: raw change


@pytest.mark.parametrize("index", [0, 2])  # a face (mouth only), a full scene (mouth and a hopping object)
def test_a_shifted_video_is_offset_by_the_shift(index):
    spec, frames, _ = clip(index)
    for where in ("start", "end"):
        assert abs(av_offset(frames, spec, where, 4.0)["lag_frames"]) < 0.1
        for lag in (3, -2):
            assert av_offset(shifted(frames, lag), spec, where, 4.0)["lag_frames"] == pytest.approx(lag, abs=0.1)
    half = len(frames) // 2  # in time at first, two frames late from the middle on
    drifting = np.concatenate([frames[:half], shifted(frames, 2)[half:]])
    assert abs(av_offset(drifting, spec, "start", 4.0)["lag_frames"]) < 0.1
    assert av_offset(drifting, spec, "end", 4.0)["lag_frames"] == pytest.approx(2, abs=0.1)
    assert av_offset(frames[:1].repeat(len(frames), axis=0), spec, "start", 4.0) is None


def test_every_metric_per_window_holds_on_the_truth():
    spec, frames, stems = clip(2)
    bounds = window_bounds(spec, 2.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == spec.frames
    assert all(previous[1] == following[0] for previous, following in zip(bounds, bounds[1:]))
    up = lifted(spec.effect_onsets, spec.frames)
    assert not any(up[start - 1] or up[start] for start, _ in bounds[1:])  # no hop is cut in two or starts a window
    assert window_bounds(replace(spec, effect_onsets=[48, 100]), 2.0)[:2] == [(0, 55), (55, 96)]  # a hop from 48 to 53
    rows = per_window(frames, mix(stems), spec.sample_rate, spec, 2.0)
    assert len(rows) == len(bounds) == 5 and rows[-1]["end"] == spec.frames / spec.fps
    for row in rows:
        metrics = row["metrics"]
        assert metrics["effect_f1"] == 1.0 and metrics["attribute_accuracy"] == 1.0 and metrics["mood_accuracy"] == 1.0
        assert metrics["mouth_sync"] is None or metrics["mouth_sync"] > 0.99
    assert any(row["metrics"]["mouth_sync"] is None for row in rows)  # a window inside a pause
    whole = per_window(frames, mix(stems), spec.sample_rate, spec, 20.0)
    assert len(whole) == 1 and whole[0]["metrics"] == evaluate_clip(frames, mix(stems), spec.sample_rate, spec)["metrics"]


def test_mouths_rest_in_the_truth_and_a_mouth_that_never_stops_is_caught():
    spec, frames, _ = clip(0)
    truth = resting_mouth_ratio(frames, spec)
    assert truth["rest_seconds"] > 1.5 and truth["speech_seconds"] > 4
    assert truth["resting_mouth_ratio"] < 0.05 and truth["bystander_ratio"] is None
    chatter = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(spec.frames) / 7.3)  # opens and closes whatever is said
    restless = draw_frames(replace(spec, speech_envelope=list(chatter)))
    assert 0.8 < resting_mouth_ratio(restless, spec)["resting_mouth_ratio"] < 1.25
    silent = np.zeros(spec.frames, bool)
    assert resting_mouth_ratio(frames, spec, silent)["resting_mouth_ratio"] is None  # no speech to compare with


def test_the_silent_bystander_rests_and_one_who_mouths_along_is_caught():
    spec, frames, _ = clip(1)
    assert len(spec.persons) == 2 and speech_activity(spec).mean() < 0.9
    truth = resting_mouth_ratio(frames, spec)
    assert truth["resting_mouth_ratio"] < 0.05 and truth["bystander_ratio"] < 0.05
    both = draw_frames(replace(spec, persons=[replace(person, speaking=True) for person in spec.persons]))
    assert resting_mouth_ratio(both, spec)["bystander_ratio"] == pytest.approx(1.0, abs=0.1)


def test_speech_pauses_leave_the_rest_of_the_world_as_it_was():
    paused, plain = make_clip(2, LONG), make_clip(2, replace(LONG, speech_pauses=False))
    for name in ("effects", "music"):
        assert np.array_equal(paused[1][name], plain[1][name])
    with_pauses, without = np.array(paused[0].speech_envelope), np.array(plain[0].speech_envelope)
    talking = with_pauses > 0
    assert np.array_equal(with_pauses[talking], without[talking])  # whole syllables stay or go
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[1], talking, [1]]).astype(int))))[::2]
    assert runs.max() >= 1.5 * LONG.fps  # at least one real pause
    frame_of_sample = (np.arange(len(paused[1]["speech"])) * LONG.fps / SAMPLE_RATE).astype(int)
    assert not paused[1]["speech"][~talking[np.minimum(frame_of_sample, LONG.frames - 1)]].any()


def test_evaluate_long_form_writes_the_new_entries(tmp_path, capsys):
    world, report = tmp_path / "world", tmp_path / "report"
    assert main(["world", "--out", str(world), "--clips", "2", "--seconds", "4", "--speech-pauses",
                 "--kinds", "full_scene", "multi_character"]) == 0
    assert json.loads((world / "world.json").read_text())["frames"] == 96
    assert main(["evaluate", "--world", str(world), "--ground-truth", "--static", "--out", str(report), "--no-plots",
                 "--long-form", "--window-seconds", "1", "--offset-seconds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "long form, ground_truth, per window" in printed and "long form summary" in printed
    long_form = json.loads((report / "report.json").read_text())["long_form"]
    truth, still = long_form["table"]["ground_truth"], long_form["table"]["static"]
    assert truth["within_ratio"] == truth["boundary_ratio"] == 1.0 and truth["wall_vs_truth"] == 0.0
    assert abs(truth["offset_start"]) < 0.2 and abs(truth["offset_end"]) < 0.2 and truth["resting_mouth"] < 0.1
    assert still["within_ratio"] == 0.0 and still["offset_start"] is None and truth["clips"] == still["clips"] == 2
    assert len(long_form["windows"]["ground_truth"]) == 4
    clip_entry = long_form["clips"]["ground_truth"]["000_full_scene"]
    assert set(clip_entry) == {"windows", "flicker", "wall", "offset", "mouths"}
    assert main(["evaluate", "--world", str(world), "--ground-truth", "--out", str(tmp_path / "plain"), "--no-plots"]) == 0
    assert "long_form" not in json.loads((tmp_path / "plain" / "report.json").read_text())
    assert "long form" not in capsys.readouterr().out
