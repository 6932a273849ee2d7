"""The newcomer path: `python -m mtv_core generate --example` uses the built-in demo model and example."""

import subprocess
import sys
from pathlib import Path

import av

from mtv_core import demo
from mtv_core.audio import load_audio

REPO = Path(__file__).resolve().parents[2]


def test_generate_example_with_the_demo_model(tmp_path):
    out = tmp_path / "demo.mp4"
    result = subprocess.run([sys.executable, "-m", "mtv_core", "generate", "--example", "--steps", "3", "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    seconds = load_audio(demo.EXAMPLE_AUDIO).duration
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(seconds * 24)


def test_demo_is_small_and_complete():
    demo.require_demo()
    total = sum(p.stat().st_size for p in demo.DEMO_DIR.rglob("*") if p.is_file())
    assert total < 50 * 2**20


def test_any_soundtrack_and_a_prompt_work_with_nothing_else(tmp_path):
    """A newcomer's first try: a plain audio file, a prompt, no model arguments. The demo demixes it with its own
    demixer and says so."""
    out = tmp_path / "mine.mp4"
    result = subprocess.run([sys.executable, "-m", "mtv_core", "generate", "--audio", str(demo.EXAMPLE_AUDIO), "--prompt",
                             demo.example_prompt(), "--steps", "2", "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "built-in demo demixer" in result.stderr
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(load_audio(demo.EXAMPLE_AUDIO).duration * 24)


def test_the_full_scene_example_brings_all_three_stems_and_its_caption(tmp_path):
    stems = demo.example_stems("full_scene")
    assert all(load_audio(path).samples.abs().max() > 0.1 for path in stems.values())  # speech, hits and music
    assert "hops at every sound" in demo.example_prompt("full_scene")
    out = tmp_path / "full.mp4"
    result = subprocess.run([sys.executable, "-m", "mtv_core", "generate", "--example", "full_scene", "--steps", "2",
                             "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demixer" not in result.stderr  # the example brings its stems
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(load_audio(demo.example_audio("full_scene")).duration * 24)
