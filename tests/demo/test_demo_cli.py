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
