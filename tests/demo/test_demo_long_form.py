"""Long-form evidence on a held-out 10-second close-up (six chained segments, speech with pauses, fixed seeds): with
the demo's defaults the wall keeps its colour across the segments, where matching each segment's colours to the last
one's tail (the old default) lets it wander, and the picture stays in time with the sound to the end; stopping speech,
text and music guidance at 60% of the schedule, what README suggests for close-ups, takes the frame change inside
latent frames and the pulse at their boundaries well below what guiding every step makes, the lips as much in sync.
On a second close-up whose wall drifts by default, guiding speech less where nobody speaks holds it."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mtv_core import demo
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions
from mtv_core.pipeline.guidance import GuidanceScales
from mtv_core.pipeline.prompt_schedule import PromptSchedule
from mtv_core.pipeline.session import RenderRequest, RenderSession
from mtv_core.spec import STEMS
from mtv_lab.evaluation.ablations import load_model_set, stem_features, world_captions
from mtv_lab.evaluation.longform_report import clip_summary, evaluate_long_form
from mtv_lab.evaluation.videos import clip_audio, read_frames
from mtv_lab.world.generate import world_clips

STEPS = 12
SEED = 65  # held out: the demo trained on seeds 0, 2 and 30; its long-form defaults were chosen on seeds 61 and 62
# Measured at these settings (12 steps, seed 0, 2 s windows), with the demo's steady decoder. The demo's defaults
# (every step guided): frame change inside latent frames 4.2x the truth's, latent-boundary pulse 2.30, wall drift 2.5
# levels against 9.4 with the tail matched, lag 0.28 and 0.66 frames at the start and the end, mouth sync 0.75.
# Speech, text and music stopped at 0.6: 2.4x, 1.64, mouth sync 0.79. On seed 66: 4.2x and 2.25 against 2.2x and 1.62.
# (The decoder before its steady pass: 7.0x and 2.39 against 4.6x and 1.62.)
MAX_DRIFT, MAX_LAG_FRAMES = 6.0, 1.0
MAX_WITHIN_RATIO, MAX_BOUNDARY_PULSE, MOUTH_SYNC_SLACK = 3.3, 1.9, 0.05  # stopped at 0.6; every step exceeds them
CLOSE_UP_UNTIL = {"speech": 0.6, "text": 0.6, "music": 0.6}
DRIFTING_SEED = 66  # held out; by default its wall drifts 12.9 levels (the same settings)
# Speech at 1 where nobody speaks: drift 1.7, resting mouth 0.11 (0.12 by default), mouth sync 0.76 (0.77). Kept at 8
# on the tenth of each pause frame where it pushes hardest: drift 4.7, resting mouth 0.13.
PAUSES = {"speech_in_pauses": 1.0}
RESTING_SLACK = 0.05
REPO = Path(__file__).resolve().parents[2]


def _close_up(tmp_path_factory, seed: int):
    folder = tmp_path_factory.mktemp("long") / "world"
    subprocess.run([sys.executable, "-m", "mtv_lab", "world", "--out", str(folder), "--clips", "1", "--kinds", "basic_face",
                    "--seed", str(seed), "--seconds", "10", "--speech-pauses"], check=True, cwd=REPO, capture_output=True)
    return folder, world_clips(folder)[0]


@pytest.fixture(scope="module")
def close_up(tmp_path_factory):
    return _close_up(tmp_path_factory, SEED)


@pytest.fixture(scope="module")
def models():
    demo.require_demo()
    return load_model_set(demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC)


def long_form(models, world, spec, config: GenerationConfig) -> dict:
    features, duration = stem_features(models, {name: world / f"{spec.name}_{name}.wav" for name in STEMS})
    schedule = PromptSchedule.single(world_captions(world)[spec.name])
    request = RenderRequest(models.text_encoder.encode(schedule.prompts), schedule, features, duration)
    frames = RenderSession(models.model, models.vae, config, MemoryOptions(device="cpu")).frames(request).numpy()
    truth = read_frames(world / f"{spec.name}.mp4")[0]
    audio = clip_audio(world, spec)
    result = evaluate_long_form(frames, truth, audio, spec, window_seconds=2.0, offset_seconds=4.0)
    mouths = [window["metrics"]["mouth_sync"] for window in result["windows"]]
    return {**clip_summary(result), "mouth_sync": float(np.mean([m for m in mouths if m is not None]))}


def test_the_defaults_keep_the_colour_and_the_timing_and_stopping_guidance_early_flickers_less(models, close_up):
    world, spec = close_up
    guidance = GuidanceScales(**demo.GUIDANCE)
    config = GenerationConfig(steps=STEPS, seed=0, guidance=guidance)
    default = long_form(models, world, spec, config)
    tail_matched = long_form(models, world, spec, replace(config, colour_match=True))
    stopped = long_form(models, world, spec, replace(config, guidance=replace(guidance, until=CLOSE_UP_UNTIL)))
    assert default["wall_drift"] < MAX_DRIFT < tail_matched["wall_drift"], (default, tail_matched)
    assert abs(default["offset_start"]) < MAX_LAG_FRAMES and abs(default["offset_end"]) < MAX_LAG_FRAMES, default
    assert stopped["within_ratio"] < MAX_WITHIN_RATIO < default["within_ratio"], (stopped, default)
    assert stopped["boundary_pulse"] < MAX_BOUNDARY_PULSE < default["boundary_pulse"], (stopped, default)
    assert stopped["mouth_sync"] > default["mouth_sync"] - MOUTH_SYNC_SLACK, (stopped, default)


def test_speech_guided_less_in_pauses_holds_the_wall_where_guiding_them_as_speech_lets_it_drift(models, tmp_path_factory):
    world, spec = _close_up(tmp_path_factory, DRIFTING_SEED)
    guidance = GuidanceScales(**demo.GUIDANCE)
    config = GenerationConfig(steps=STEPS, seed=0, guidance=guidance)
    default = long_form(models, world, spec, config)
    paused = long_form(models, world, spec, replace(config, guidance=replace(guidance, **PAUSES)))
    assert paused["wall_drift"] < MAX_DRIFT < default["wall_drift"], (paused, default)
    assert paused["mouth_sync"] > default["mouth_sync"] - MOUTH_SYNC_SLACK, (paused, default)
    assert paused["resting_mouth"] < default["resting_mouth"] + RESTING_SLACK, (paused, default)
