"""The built-in demo: a small MTV model with its VAE, T5, wav2vec2 and demixer, trained on the synthetic world
(`tools/build_demo.py`), and an example soundtrack with its stems and caption. Everything here is
a file the ordinary loaders read; nothing is special-cased."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileError
from ..spec import EFFECTS, MUSIC, OFFICIAL_GUIDANCE, SPEECH, STEMS

DEMO_DIR = Path(__file__).resolve().parent
MODEL = DEMO_DIR / "model.safetensors"
VAE = DEMO_DIR / "vae.safetensors"
VAE_PREVIEW = DEMO_DIR / "vae_preview.json"  # its latent -> RGB preview factors (tools/fit_preview_factors.py)
T5 = DEMO_DIR / "t5"
WAV2VEC = DEMO_DIR / "wav2vec2"
DEMIXER = DEMO_DIR / "demixer.safetensors"
# Each example folder holds clip.mp4 (the soundtrack, with the held-out clip's own picture), its stems and prompt.txt.
EXAMPLES = {
    "talking_face": DEMO_DIR / "example",  # a close-up whose mouth follows the speech, the wall the music
    "full_scene": DEMO_DIR / "example_full_scene",  # all three streams: a speaker, an object hopping at hits, music
}
EXAMPLE = EXAMPLES["talking_face"]
# The scales the demo samples with (nested guidance, mtv_core.pipeline.guidance): lip sync pushed harder than the
# official joint 3.5, event timing a little softer, text and mood at 3.5, and a silent or absent stem conditions the
# model without being guided (silent 1). Every step is guided: stopping guidance partway (`until`) helped close-ups
# and hurt small figures. README ("The demo model and the sync benchmark", "Long clips") says how they were chosen.
GUIDANCE = {"text": OFFICIAL_GUIDANCE, SPEECH: 8.0, EFFECTS: 3.0, MUSIC: OFFICIAL_GUIDANCE, "silent": 1.0}


def require_demo() -> None:
    missing = [p.name for p in (MODEL, VAE, T5, WAV2VEC, DEMIXER, EXAMPLE_AUDIO) if not p.exists()]
    if missing:
        raise ModelFileError(f"the built-in demo is incomplete (missing {', '.join(missing)} in {DEMO_DIR}); "
                             "rebuild it with `python tools/build_demo.py --work /tmp/demo-build`, or pass your own model files")


def example_prompt(name: str = "talking_face") -> str:
    return (EXAMPLES[name] / "prompt.txt").read_text().strip()


def example_stems(name: str = "talking_face") -> dict:
    return {stem: EXAMPLES[name] / f"{stem}.wav" for stem in STEMS}


def example_audio(name: str = "talking_face") -> Path:
    return EXAMPLES[name] / "clip.mp4"


EXAMPLE_STEMS = example_stems()
EXAMPLE_AUDIO = example_audio()
