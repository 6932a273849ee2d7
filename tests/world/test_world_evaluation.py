"""The evaluator: AV-Align and the effect scores against hand computations, region sync ranks the truth above
the same motion out of time, the world's own videos score high and a still picture low, soft/noisy videos are
still measured, and mismatched inputs are refused."""

import json
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from mtv_core.errors import AudioInputError, ConfigError
from mtv_lab.cli import main
from mtv_lab.evaluation import av_align, av_align_score, evaluate_clip
from mtv_lab.evaluation.av_align import local_maxima
from mtv_lab.evaluation.measures import effect_scores, hop_starts, region_sync
from mtv_lab.world import WorldSettings, draw_frames, make_clip
from mtv_lab.world.generate import mix

FPS, RATE = 24, 16000


def test_av_align_score_is_matches_over_union():
    # audio 3 matches video 4 (one frame apart), 20 matches 20, 10 has none within a frame of 12.
    assert av_align_score([3 / FPS, 10 / FPS, 20 / FPS], [4 / FPS, 12 / FPS, 20 / FPS, 30 / FPS], FPS) == 2 / (3 + 4 - 2)
    assert av_align_score([5 / FPS], [7 / FPS], FPS) == 0.0
    assert av_align_score([], [], FPS) is None
    assert local_maxima(np.array([0, 2, 1, 1, 3, 3, 0, 5, 0])) == [1, 7]  # strict: the 3, 3 plateau is no peak


def test_av_align_on_clicks_and_a_square_that_moves_with_them():
    frames = np.zeros((48, 64, 96, 3), np.uint8)
    audio = np.zeros(48 * RATE // FPS, np.float32)
    for index in range(48):
        shift = 8 * ((index >= 12) + (index >= 36))
        frames[index, 20:44, 10 + shift:34 + shift] = 220
    for onset in (12, 36):
        start = int((onset + 0.5) * RATE / FPS)
        audio[start:start + 800] = np.random.default_rng(onset).standard_normal(800) * np.exp(-np.arange(800) / 150)
    result = av_align(frames, audio, RATE, FPS)
    assert [round(t * FPS) for t in result["video_peaks"]] == [12, 36]
    assert [round(t * FPS) for t in result["audio_peaks"]] == [12, 36]
    assert result["score"] == av_align_score(result["audio_peaks"], result["video_peaks"], FPS) == 1.0


def test_effect_scores_count_events_away_from_every_sound_against():
    # onsets 10, 30, 50; a hop at 11 (lands at 17), one at 31 (lands 37), a flicker at 70, nothing near 50.
    events = [11, 17, 31, 37, 70]
    assert hop_starts(events) == [11, 31, 70]
    scores = effect_scores([10, 30, 50], events)
    assert scores["effect_recall"] == 2 / 3 and scores["effect_precision"] == 2 / 3
    assert scores["effect_f1"] == pytest.approx(2 / 3)
    assert effect_scores([10, 12], [11])["effect_recall"] == 0.5  # one event answers one onset, not two
    assert effect_scores([10], [])["effect_f1"] == 0.0 and effect_scores([], [5])["effect_f1"] is None


def test_region_sync_ranks_the_truth_above_the_same_motion_out_of_time():
    settings = WorldSettings(seed=3, clips=5, frames=96)
    for index in (0, 3):  # a close-up face, a hopping object
        spec, stems = make_clip(index, settings)
        frames, audio = draw_frames(spec), mix(stems)
        in_time = region_sync(frames, audio, spec.sample_rate, spec)
        late = region_sync(np.concatenate([frames[:1].repeat(12, axis=0), frames[:-12]]), audio, spec.sample_rate, spec)
        still = region_sync(frames[:1].repeat(len(frames), axis=0), audio, spec.sample_rate, spec)
        assert in_time > 0.45 and in_time > late + 0.2 and still == 0.0, (spec.name, in_time, late)


def test_world_videos_score_high_and_a_still_picture_low(world, tmp_path):
    assert main(["evaluate", "--world", str(world), "--ground-truth", "--static", "--out", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "report.json").read_text())["table"]
    truth, still = table["ground_truth"], table["static"]
    assert truth["mouth_sync"] > 0.95 and truth["effect_f1"] == 1.0
    assert truth["mood_accuracy"] == 1.0 and truth["attribute_accuracy"] == 1.0
    assert truth["av_align"] > 0.25 and truth["consistency"] > 0.99
    assert still["mouth_sync"] == 0.0 and still["effect_f1"] == 0.0 and still["av_align"] == 0.0
    assert still["consistency"] == 1.0 and truth["clips"] == still["clips"] == 6
    assert len(list((tmp_path / "plots" / "ground_truth").glob("*.png"))) == 6


def test_soft_noisy_frames_are_still_measured():
    settings = WorldSettings(seed=11, clips=5, frames=72)
    noise = np.random.default_rng(0)
    for index in range(5):
        spec, stems = make_clip(index, settings)
        soft = np.stack([cv2.GaussianBlur(frame, (0, 0), 1.5) for frame in draw_frames(spec)]).astype(np.float32)
        noisy = np.clip(soft + noise.normal(0, 6, soft.shape), 0, 255).astype(np.uint8)
        metrics = evaluate_clip(noisy, mix(stems), spec.sample_rate, spec)["metrics"]
        assert metrics["attribute_accuracy"] == 1.0, spec.name
        assert metrics["mouth_sync"] is None or metrics["mouth_sync"] > 0.9, spec.name
        assert metrics["effect_f1"] in (None, 1.0) and metrics["mood_accuracy"] in (None, 1.0), spec.name


def test_mismatched_frames_audio_and_fps_are_refused(world, tmp_path, capsys):
    spec, stems = make_clip(0, WorldSettings(seed=3, clips=1, frames=60))
    frames, audio = draw_frames(spec), mix(stems)
    with pytest.raises(ConfigError, match="the video has 55 frames but its audio and truth have 60 .*generate exactly 60 frames"):
        evaluate_clip(frames[:55], audio, spec.sample_rate, spec)
    with pytest.raises(AudioInputError, match=r"the audio lasts 1.250 s but the video 2.500 s"):
        evaluate_clip(frames, audio[: len(audio) // 2], spec.sample_rate, spec)
    generated = tmp_path / "generated"
    generated.mkdir()
    _write_video(generated / f"{spec.name}.mp4", frames, fps=30)
    assert main(["evaluate", "--world", str(world), "--videos", f"model={generated}", "--out", str(tmp_path / "r"), "--no-plots"]) == 1
    assert "runs at 30 fps but world clip 000_basic_face at 24 fps; generate at 24 fps" in capsys.readouterr().err
    assert main(["evaluate", "--world", str(world), "--videos", "model", "--out", str(tmp_path / "r")]) == 1
    assert "--videos 'model' is not NAME=DIR" in capsys.readouterr().err


def _write_video(path, frames, fps):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
