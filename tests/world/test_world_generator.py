"""The world generator: deterministic, real files that decode back, clear errors for impossible settings."""

import csv
import json

import numpy as np
import pytest
from world_test_settings import SETTINGS

from mtv_core.audio import load_audio
from mtv_core.errors import ConfigError
from mtv_lab.evaluation.videos import read_frames
from mtv_lab.world import KINDS, WorldSettings, draw_frames, load_truth, make_clip, truth_dict, world_clips, write_world


def test_same_seed_same_clip_and_other_seed_other_clip():
    settings = WorldSettings(seed=7, clips=5, frames=56)
    for index in range(5):
        (first, first_stems), (second, second_stems) = make_clip(index, settings), make_clip(index, settings)
        assert truth_dict(first) == truth_dict(second)
        assert all(np.array_equal(first_stems[name], second_stems[name]) for name in first_stems)
        assert np.array_equal(draw_frames(first), draw_frames(second))
    other, _ = make_clip(2, WorldSettings(seed=8, clips=5, frames=56))
    assert truth_dict(other) != truth_dict(make_clip(2, settings)[0])


def test_world_files_decode_back_to_what_was_drawn(world):
    specs = world_clips(world)
    assert [spec.kind for spec in specs] == [*KINDS, KINDS[0]]
    for spec in specs:
        frames, fps = read_frames(world / f"{spec.name}.mp4")
        assert fps == 24 and frames.shape == (60, 64, 96, 3)
        error = float(np.abs(frames.astype(int) - draw_frames(spec).astype(int)).mean())
        assert error < 6, f"{spec.name}: decoded frames differ from the drawing by {error:.1f} levels"  # H.264 + YUV rounding
        mix = load_audio(world / f"{spec.name}.mp4")
        assert abs(mix.duration - 2.5) < 0.05 and mix.samples.abs().max() > 0.1
        for stem in ("speech", "effects", "music"):
            assert load_audio(world / f"{spec.name}_{stem}.wav").num_samples == 40000
        assert load_truth(world / f"{spec.name}.json") == spec
    rows = list(csv.DictReader(open(world / "captions.csv")))
    assert [row["clip"] for row in rows] == [f"{spec.name}.mp4" for spec in specs]
    assert [int(row["persons"]) for row in rows] == [1, 1, 2, 0, 0, 1]
    assert rows[2]["caption"].startswith("Two person conversation. Persons: Person1: ")
    truth = json.loads((world / f"{specs[3].name}.json").read_text())
    assert truth["object"]["colour"] in truth["caption"] and truth["object"]["shape"] in truth["caption"]
    assert truth["effect_onsets"] and truth["subsets"] == ["sound_event"]


def test_same_seed_writes_the_same_world(world, tmp_path):
    """Byte for byte: the drawing, the sounds, and the mp4 (whose encoder settings repeat exactly)."""
    write_world(tmp_path, SETTINGS)
    for spec in world_clips(world):
        for name in (f"{spec.name}.json", f"{spec.name}_speech.wav", f"{spec.name}.mp4"):
            assert (tmp_path / name).read_bytes() == (world / name).read_bytes(), name


@pytest.mark.parametrize("change, message", [
    ({"seed": -1}, "world seed -1 cannot make a valid clip; use a whole number >= 0"),
    ({"frames": 49}, "world frames 49 cannot make a valid clip; use at least 56"),
    ({"height": 60}, "world height 60 cannot make a valid clip; use a multiple of 8"),
    ({"width": 40}, "world width 40 cannot make a valid clip; use a multiple of 8 of at least 64"),
    ({"clips": 0}, "world clips 0 cannot make a valid clip; ask for at least 1 clip"),
    ({"kinds": ("basic_face", "dance")}, r"world kinds \('basic_face', 'dance'\) cannot make a valid clip; choose from"),
])
def test_impossible_settings_are_refused_before_writing(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        write_world(tmp_path / "out", WorldSettings(**change))
    assert not (tmp_path / "out").exists()


def test_a_full_scene_has_all_three_streams_each_with_its_own_thing_to_move():
    spec, stems = make_clip(0, WorldSettings(seed=4, clips=1, frames=72, kinds=("full_scene",)))
    assert spec.kind == "full_scene" and len(spec.persons) == 1 and spec.speaker == 1 and spec.object is not None
    assert spec.mood in ("major", "minor") and spec.effect_onsets and max(spec.speech_envelope) == 1.0
    assert all(np.abs(stems[name]).max() > 0.1 for name in ("speech", "effects", "music"))
    assert spec.subsets == ["single_character", "sound_event", "visual_mood"]
    mouth, thing = spec.persons[0].mouth_box, spec.object.box
    assert mouth[2] < thing[0]  # the person stands left of the object: mouth and object never share pixels
    assert "hops at every sound" in spec.caption and "wall colour follows the music" in spec.caption
    assert make_clip(0, WorldSettings(seed=4, clips=1, frames=72))[0].kind == KINDS[0]  # not in the default cycle


def test_major_music_is_brighter_than_minor():
    """The moods differ in register and overtones, which a small audio encoder can hear (the third alone it cannot)."""
    from mtv_lab.world import sounds

    def centroid(samples):
        spectrum = np.abs(np.fft.rfft(samples))
        return float((np.fft.rfftfreq(samples.size, 1 / sounds.SAMPLE_RATE) * spectrum).sum() / spectrum.sum())

    rng = np.random.default_rng(0)
    major = [centroid(sounds.music(rng, "major", 48, 24.0)) for _ in range(8)]
    minor = [centroid(sounds.music(rng, "minor", 48, 24.0)) for _ in range(8)]
    assert min(major) > 2 * max(minor), (major, minor)


def test_music_sets_the_wall_in_every_kind_but_sound_events():
    """Each stream's pathway hears its stem in most stages: music plays under speech too, and the wall follows it."""
    from mtv_lab.evaluation.measures import background_warmth

    settings = WorldSettings(seed=3, clips=10, frames=56)
    for index in range(10):
        spec, stems = make_clip(index, settings)
        loud = float(np.abs(stems["music"]).max())
        if spec.kind == "sound_event":
            assert spec.mood is None and loud == 0.0, spec.name
            continue
        assert spec.mood in ("major", "minor") and loud > 0.1, spec.name
        warmth = background_warmth(draw_frames(spec), spec)
        assert abs(warmth) > 50 and (warmth > 0) == (spec.mood == "major"), (spec.name, warmth)


def test_the_object_hops_at_each_onset_and_lands_a_fixed_time_later():
    """Whether the object is up depends only on the last HOP_FRAMES frames of sound (what one latent
    frame's effects window can hear), not on how many sounds came before."""
    from mtv_lab.evaluation.measures import object_change
    from mtv_lab.world.scene import HOP_FRAMES

    spec, _ = make_clip(3, WorldSettings(seed=3, clips=4, frames=72))
    assert spec.kind == "sound_event" and len(spec.effect_onsets) >= 2
    moves = np.flatnonzero(object_change(draw_frames(spec), spec) > 1.0).tolist()
    assert moves == sorted(frame for onset in spec.effect_onsets for frame in (onset, onset + HOP_FRAMES) if frame < 72)


def test_quiet_events_leave_sound_event_clips_a_silent_stretch_where_nothing_hops():
    from mtv_lab.evaluation.measures import object_change

    quiet = WorldSettings(seed=5, clips=24, frames=120, kinds=("sound_event", "full_scene"), quiet_events=True)
    loud = WorldSettings(seed=5, clips=24, frames=120, kinds=("sound_event", "full_scene"))
    without_hits = 0
    for index in range(24):
        spec, stems = make_clip(index, quiet)
        if spec.kind == "full_scene":
            assert truth_dict(spec) == truth_dict(make_clip(index, loud)[0])
            continue
        without_hits += not spec.effect_onsets
        assert np.diff([0, *spec.effect_onsets, spec.frames]).max() >= 30, spec.effect_onsets
        if not spec.effect_onsets:
            assert not np.any(stems["effects"]) and not np.any(object_change(draw_frames(spec), spec) > 1.0)
    assert 0 < without_hits < 12
