"""Evidence of control: on held-out world clips (fixed seeds), each audio stream of the built-in demo
model moves its own metric well above the same generation with that stream zeroed."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtv_core import demo
from mtv_lab.evaluation import evaluate_clip
from mtv_lab.evaluation.ablations import generate_clip, load_model_set
from mtv_lab.evaluation.measures import background_warmth
from mtv_lab.evaluation.videos import clip_audio
from mtv_lab.world.generate import world_clips

STEPS = 12
CLIPS_PER_KIND = 2
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """A held-out world (seed 1; the demo trained on seed 0): two clips of each kind."""
    folder = tmp_path_factory.mktemp("heldout") / "world"
    subprocess.run([sys.executable, "-m", "mtv_lab", "world", "--out", str(folder), "--clips", str(5 * CLIPS_PER_KIND),
                    "--seed", "1", "--frames", "72"], check=True, cwd=REPO, capture_output=True)
    return folder, world_clips(folder)


@pytest.fixture(scope="module")
def models():
    demo.require_demo()
    return load_model_set(demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC)


@pytest.fixture(scope="module")
def generated(models, heldout):
    """Frames of a held-out clip with every stream, or with some zeroed; each generated once, seed 0."""
    world, _ = heldout
    cache = {}

    def frames(spec, zeroed=()):
        if (spec.name, zeroed) not in cache:
            cache[spec.name, zeroed] = generate_clip(models, world, spec.name, zeroed, steps=STEPS, seed=0).numpy()
        return cache[spec.name, zeroed]

    return frames


def metric_pairs(generated, heldout, kind, stream, metric):
    """(with the stream, with it zeroed) per clip of `kind`."""
    world, specs = heldout
    pairs = []
    for spec in (s for s in specs if s.kind == kind):
        audio = clip_audio(world, spec)
        pairs.append([evaluate_clip(generated(spec, zeroed), audio, spec.sample_rate, spec)["metrics"][metric]
                      for zeroed in ((), (stream,))])
    assert len(pairs) == CLIPS_PER_KIND
    return np.array(pairs)


def test_speech_drives_the_mouth(generated, heldout):
    pairs = metric_pairs(generated, heldout, "basic_face", "speech", "mouth_sync")
    full, muted = pairs.mean(axis=0)
    assert full > 0.4 and full > muted + 0.3, pairs


def test_effects_drive_the_object(generated, heldout):
    pairs = metric_pairs(generated, heldout, "sound_event", "effects", "effect_f1")
    full, muted = pairs.mean(axis=0)
    assert full >= muted + 0.3, pairs


def test_music_sets_the_mood(generated, heldout):
    """Under speech and alone, the wall warms for a bright major chord and cools for a dark minor one;
    without music the wall does not follow the mood."""
    _, specs = heldout
    chosen = [s for s in specs if s.kind in ("basic_face", "visual_mood")]
    assert sorted(s.mood for s in chosen) == ["major", "major", "minor", "minor"]
    shifts = np.array([[(1.0 if spec.mood == "major" else -1.0) * background_warmth(generated(spec, zeroed), spec)
                        for zeroed in ((), ("music",))] for spec in chosen])
    assert (shifts[:, 0] > 20).all(), shifts  # the right mood on every clip
    full, muted = shifts.mean(axis=0)
    assert full > muted + 50, shifts
