"""The built-in demo: a small MTV model with its VAE, T5 and wav2vec2, trained on the synthetic world
(`tools/build_demo.py`), and an example soundtrack with its stems and caption. Everything here is
a file the ordinary loaders read; nothing is special-cased."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileError
from ..spec import STEMS

DEMO_DIR = Path(__file__).resolve().parent
MODEL = DEMO_DIR / "model.safetensors"
VAE = DEMO_DIR / "vae.safetensors"
T5 = DEMO_DIR / "t5"
WAV2VEC = DEMO_DIR / "wav2vec2"
EXAMPLE = DEMO_DIR / "example"
EXAMPLE_STEMS = {name: EXAMPLE / f"{name}.wav" for name in STEMS}
EXAMPLE_AUDIO = EXAMPLE / "clip.mp4"
EXAMPLE_PROMPT = EXAMPLE / "prompt.txt"


def require_demo() -> None:
    missing = [p.name for p in (MODEL, VAE, T5, WAV2VEC, EXAMPLE_AUDIO) if not p.exists()]
    if missing:
        raise ModelFileError(f"the built-in demo is incomplete (missing {', '.join(missing)} in {DEMO_DIR}); "
                             "rebuild it with `python tools/build_demo.py --work /tmp/demo-build`, or pass your own model files")


def example_prompt() -> str:
    return EXAMPLE_PROMPT.read_text().strip()
