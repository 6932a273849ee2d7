"""Music that changes mood mid-way (`world --mood-change`): the wall cuts to the new mood at the frame the truth
states, the chord changes with it, the rest of the clip stays as without the change, old truth JSON still loads,
and mood accuracy judges each window against the mood playing in it."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from mtv_core.audio import load_audio
from mtv_lab.cli import main
from mtv_lab.evaluation import evaluate_clip
from mtv_lab.evaluation.longform import per_window, slice_spec
from mtv_lab.evaluation.videos import read_frames
from mtv_lab.world import WorldSettings, draw_frames, load_truth, make_clip, spec_from_dict, truth_dict
from mtv_lab.world.generate import mix
from mtv_lab.world.scene import BACKGROUNDS
from mtv_lab.world.sounds import CROSSFADE_SECONDS, SAMPLE_RATE

CHANGING = WorldSettings(seed=3, clips=3, frames=144, speech_pauses=True, mood_change=True,
                         kinds=("full_scene", "basic_face", "sound_event"))
OTHER = {"major": "minor", "minor": "major"}


def wall_colours(frames: np.ndarray, spec) -> np.ndarray:
    """(frames, 3): the mean colour of the background corners per frame."""
    x0, y0, x1, y1 = spec.background_boxes[0]
    return frames[:, y0:y1, x0:x1].reshape(len(frames), -1, 3).mean(axis=1)


def centroid(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float((np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE) * spectrum).sum() / spectrum.sum())


@pytest.fixture(scope="module")
def changing_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mood_change")
    assert main(["world", "--out", str(folder), "--clips", "2", "--seconds", "6", "--speech-pauses", "--mood-change",
                 "--kinds", "full_scene", "basic_face"]) == 0
    return folder


def test_the_wall_cuts_to_the_other_mood_at_the_stated_frame(changing_world):
    assert json.loads((changing_world / "world.json").read_text())["mood_change"] is True
    for name in ("000_full_scene", "001_basic_face"):
        truth = json.loads((changing_world / f"{name}.json").read_text())
        spec, cut, second = load_truth(changing_world / f"{name}.json"), truth["mood_change"]["frame"], truth["mood_change"]["mood"]
        assert spec.frames // 3 <= cut < 2 * spec.frames // 3 and second == OTHER[truth["mood"]]
        walls = wall_colours(draw_frames(spec), spec)
        assert np.array_equal(walls[:cut], np.tile(BACKGROUNDS[truth["mood"]], (cut, 1)))
        assert np.array_equal(walls[cut:], np.tile(BACKGROUNDS[second], (spec.frames - cut, 1)))
        decoded = wall_colours(read_frames(changing_world / f"{name}.mp4")[0], spec)  # what the mp4 shows (H.264)
        assert np.abs(decoded[:cut - 1] - BACKGROUNDS[truth["mood"]]).max() < 8
        assert np.abs(decoded[cut + 1:] - BACKGROUNDS[second]).max() < 8
        music = load_audio(changing_world / f"{name}_music.wav").samples[0].numpy()
        change = int(cut / spec.fps * SAMPLE_RATE)
        before, after = music[int(0.3 * SAMPLE_RATE):change - 800], music[change + 800:-int(0.3 * SAMPLE_RATE)]
        major, minor = (before, after) if truth["mood"] == "major" else (after, before)
        assert centroid(major) > 2 * centroid(minor)  # the bright major chord, then the dark minor one (or back)
    rows = list(csv.DictReader(open(changing_world / "captions.csv")))
    assert "wall colour follows the music" in rows[0]["caption"]  # the caption names no mood, so it stays


def test_the_change_leaves_the_rest_of_the_clip_as_without_it():
    for index in range(3):
        (changed, stems), (plain, plain_stems) = make_clip(index, CHANGING), make_clip(index, replace(CHANGING, mood_change=False))
        assert truth_dict(replace(changed, mood_change=None)) == truth_dict(plain)
        assert all(np.array_equal(stems[name], plain_stems[name]) for name in ("speech", "effects"))
        if changed.mood is None:  # no music, no change
            assert changed.mood_change is None and not stems["music"].any()
            continue
        crossfade = int((changed.mood_change["frame"] / CHANGING.fps - CROSSFADE_SECONDS / 2) * SAMPLE_RATE)
        assert np.array_equal(stems["music"][:crossfade], plain_stems["music"][:crossfade])
        assert not np.allclose(stems["music"][-crossfade:], plain_stems["music"][-crossfade:])


def test_same_seed_same_change_and_other_seeds_other_frames():
    first, second = make_clip(0, CHANGING), make_clip(0, CHANGING)
    assert first[0].mood_change == second[0].mood_change and np.array_equal(first[1]["music"], second[1]["music"])
    frames = {make_clip(0, replace(CHANGING, seed=seed))[0].mood_change["frame"] for seed in range(6)}
    assert len(frames) > 2


def test_old_truth_without_a_mood_change_still_loads():
    spec, _ = make_clip(0, CHANGING)
    old = truth_dict(replace(spec, mood_change=None))
    del old["mood_change"]
    loaded = spec_from_dict(json.loads(json.dumps(old)))
    assert loaded.mood_change is None and loaded == replace(spec, mood_change=None)
    assert spec_from_dict(json.loads(json.dumps(truth_dict(spec)))) == spec


def test_windows_are_judged_against_the_mood_playing_in_them():
    spec, stems = make_clip(0, CHANGING)
    cut, second = spec.mood_change["frame"], spec.mood_change["mood"]
    assert slice_spec(spec, cut, spec.frames).mood == second and slice_spec(spec, cut, spec.frames).mood_change is None
    assert slice_spec(spec, 0, cut).mood == spec.mood and slice_spec(spec, 0, cut).mood_change is None
    assert slice_spec(spec, cut - 10, cut + 10).mood_change == {"frame": 10, "mood": second}
    truth, kept = draw_frames(spec), draw_frames(replace(spec, mood_change=None))  # kept: the first mood throughout
    audio = mix(stems)
    whole = evaluate_clip(truth, audio, spec.sample_rate, spec)["metrics"]
    assert whole["mood_accuracy"] == 1.0 and whole["effect_f1"] == 1.0 and whole["attribute_accuracy"] == 1.0
    assert evaluate_clip(kept, audio, spec.sample_rate, spec)["metrics"]["mood_accuracy"] == pytest.approx(cut / spec.frames)
    truth_rows, kept_rows = (per_window(frames, audio, spec.sample_rate, spec, 1.0) for frames in (truth, kept))
    assert all(row["metrics"]["mood_accuracy"] == 1.0 and row["metrics"]["effect_f1"] == 1.0 for row in truth_rows)
    before = [row for row in kept_rows if row["end"] * spec.fps <= cut]
    after = [row for row in kept_rows if row["start"] * spec.fps >= cut]
    assert before and after and len(before) + len(after) >= len(kept_rows) - 1
    assert all(row["metrics"]["mood_accuracy"] == 1.0 for row in before)
    assert all(row["metrics"]["mood_accuracy"] == 0.0 for row in after)
