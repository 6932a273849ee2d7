"""The gate on the demixed speech stem, on a held-out 10-second clip of a small character who speaks with pauses over
music: the demo's demixer leaks music into the speech stem between lines and the mouth moves to it; with the stem
gated (the default) the mouth rests there, and follows the speech as closely as before."""

import subprocess
import sys
from pathlib import Path

import pytest

from mtv_core import demo
from mtv_core.audio import load_audio, save_wav
from mtv_core.checkpoints import load_demixer
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions
from mtv_core.pipeline.guidance import GuidanceScales
from mtv_core.pipeline.prompt_schedule import PromptSchedule
from mtv_core.pipeline.session import RenderRequest, RenderSession
from mtv_core.spec import STEMS
from mtv_lab.evaluation.ablations import load_model_set, stem_features, world_captions
from mtv_lab.evaluation.longform import resting_mouth_ratio
from mtv_lab.evaluation.measures import mouth_openings, mouth_sync
from mtv_lab.world.generate import world_clips

STEPS = 12
SEED = 67  # held out: the gate was measured on seeds 63 and 64 (README, "Mouths at rest")
# Measured here (12 steps, seed 0): resting mouth 0.58 as separated, 0.13 gated; mouth sync 0.71 and 0.74. On seed 68
# the gate changed nothing (0.44 and 0.44; that character's mouth barely follows the speech either way, sync 0.28).
MAX_GATED_RESTING, MOUTH_SYNC_SLACK = 0.3, 0.05
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_character(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate") / "world"
    subprocess.run([sys.executable, "-m", "mtv_lab", "world", "--out", str(folder), "--clips", "1", "--kinds",
                    "single_character", "--seed", str(SEED), "--seconds", "10", "--speech-pauses"],
                   check=True, cwd=REPO, capture_output=True)
    return folder, world_clips(folder)[0]


def render_demixed(models, world: Path, spec, gate_dbfs, scratch: Path):
    """The clip's soundtrack demixed by the demo's demixer (the speech stem gated at `gate_dbfs`) and rendered."""
    stems = load_demixer(demo.DEMIXER).separate(load_audio(world / f"{spec.name}.mp4"), speech_gate_dbfs=gate_dbfs)
    files = {}
    for name in STEMS:
        files[name] = scratch / f"{name}.wav"
        save_wav(files[name], stems.waveform(name))
    features, duration = stem_features(models, files)
    schedule = PromptSchedule.single(world_captions(world)[spec.name])
    request = RenderRequest(models.text_encoder.encode(schedule.prompts), schedule, features, duration)
    config = GenerationConfig(steps=STEPS, seed=0, guidance=GuidanceScales(**demo.GUIDANCE))
    frames = RenderSession(models.model, models.vae, config, MemoryOptions(device="cpu")).frames(request).numpy()
    return resting_mouth_ratio(frames, spec)["resting_mouth_ratio"], mouth_sync(frames, spec, mouth_openings(frames, spec))


def test_the_gated_speech_stem_lets_the_mouth_rest_between_lines_and_keeps_it_in_sync(small_character, tmp_path):
    demo.require_demo()
    world, spec = small_character
    models = load_model_set(demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC)
    (tmp_path / "separated").mkdir()
    (tmp_path / "gated").mkdir()
    separated_rest, separated_sync = render_demixed(models, world, spec, None, tmp_path / "separated")
    gated_rest, gated_sync = render_demixed(models, world, spec, -45.0, tmp_path / "gated")
    assert gated_rest < MAX_GATED_RESTING < separated_rest, (gated_rest, separated_rest)
    assert gated_sync > separated_sync - MOUTH_SYNC_SLACK, (gated_sync, separated_sync)
