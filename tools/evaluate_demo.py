"""The demo's evaluation table: the demo model and its ablations (all audio zeroed, each stream zeroed
in turn) on a held-out world, plus the world's own videos and a static baseline.

    python tools/evaluate_demo.py --world /tmp/demo-build/heldout --out /tmp/demo-eval [--model candidate.safetensors]

`--variants demo no_effects` generates only those rows. Every variant samples with the demo's guidance scales
(mtv_core.demo.GUIDANCE) unless --joint-guidance is given, at every step unless --guidance-until is given, speech
alike in pauses unless --speech-in-pauses is given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from mtv_core import demo
    from mtv_core.pipeline.guidance import GuidanceScales, parse_until
    from mtv_core.pipeline.video import write_mp4
    from mtv_lab.evaluation.ablations import STREAM_ABLATIONS, generate_clip, load_model_set
    from mtv_lab.world.generate import world_clips

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=demo.MODEL, help="an MTV model for the demo's VAE, T5 and wav2vec2 "
                                                                      "(default: the demo model)")
    parser.add_argument("--vae", type=Path, default=demo.VAE, help="a VAE for the demo's latents (default: the demo's)")
    parser.add_argument("--joint-guidance", type=float, help="one scale for every condition instead of the demo's")
    parser.add_argument("--guidance-until", default="", help="stop conditions' guidance early, as generate's "
                                                             "--guidance-until ('text=0.6,music=0.6'; default: every step)")
    parser.add_argument("--speech-in-pauses", type=float, help="speech's scale where nobody speaks, as generate's")
    parser.add_argument("--speech-pause-keep", type=float, help="the share of a pause that keeps speech's scale, as "
                                                                "generate's")
    parser.add_argument("--variants", nargs="+", choices=["demo", *STREAM_ABLATIONS], default=["demo", *STREAM_ABLATIONS],
                        help="which rows to generate (default: the demo and every ablation)")
    args = parser.parse_args()
    guidance = (GuidanceScales.joint(args.joint_guidance) if args.joint_guidance is not None
                else GuidanceScales(**demo.GUIDANCE))
    guidance = replace(guidance, until=parse_until(args.guidance_until), speech_in_pauses=args.speech_in_pauses,
                       speech_pause_keep=args.speech_pause_keep)

    models = load_model_set(args.model, args.vae, demo.T5, demo.WAV2VEC)
    variants = {name: zeroed for name, zeroed in {"demo": (), **STREAM_ABLATIONS}.items() if name in args.variants}
    for spec in world_clips(args.world):
        for variant, zeroed in variants.items():
            path = args.out / "videos" / variant / f"{spec.name}.mp4"
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            frames = generate_clip(models, args.world, spec.name, zeroed, args.steps, args.seed, guidance)
            write_mp4(path, frames, 24.0)
            print(f"{variant}: {path}", flush=True)
    rows = [f"{variant}={args.out / 'videos' / variant}" for variant in variants]
    subprocess.run([sys.executable, "-m", "mtv_lab", "evaluate", "--world", str(args.world), "--videos", *rows,
                    "--ground-truth", "--static", "--out", str(args.out / "report")], check=True, cwd=REPO)


if __name__ == "__main__":
    main()
