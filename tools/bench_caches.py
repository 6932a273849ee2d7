"""Step caches on the built-in world: how much transformer work each skips, how much faster it is, and how far mouth
sync, effect match and mood accuracy move from the uncached run (the same seeds, the same clips).

    python tools/bench_caches.py --world /tmp/cache-bench/world --out /tmp/cache-bench --steps 20 50 \\
        --caches fbc:0.15 fbc:0.3 taylorseer:2 --reference-seed 1

The world is written first when the folder does not exist (held-out seed 1, like the demo's evaluation).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WATCHED = ("mouth_sync", "effect_f1", "mood_accuracy")
TOLERANCE = 0.05


def encode_clips(models, world: Path, specs) -> dict:
    """Per clip: features, duration, caption, mono mix (encoded once, shared by every variant)."""
    from mtv_core.spec import STEMS
    from mtv_lab.evaluation.ablations import stem_features, world_captions
    from mtv_lab.evaluation.videos import clip_audio

    captions = world_captions(world)
    return {spec.name: (*stem_features(models, {name: world / f"{spec.name}_{name}.wav" for name in STEMS}),
                        captions[spec.name], clip_audio(world, spec)) for spec in specs}


def run_variant(models, clips: dict, specs, steps: int, cache_text: str, seed: int = 0) -> dict:
    """Renders every clip; `wall_s` counts sampling and decoding (the audio was encoded before)."""
    from mtv_core.cli.bench.runs import ModuleClock
    from mtv_core.pipeline.speed import AttentionCounter, StepCache
    from mtv_lab.evaluation.ablations import generate_from_features
    from mtv_lab.evaluation.measures import evaluate_clip
    from mtv_lab.evaluation.report import summarise

    cache, results, wall = StepCache.parse(cache_text), {}, 0.0
    with AttentionCounter(models.model) as counter, ModuleClock(models.model) as timer:
        for spec in specs:
            features, duration, caption, mix = clips[spec.name]
            began = time.perf_counter()
            frames = generate_from_features(models, features, duration, caption, steps=steps, seed=seed, cache=cache)
            wall += time.perf_counter() - began
            results[spec.name] = evaluate_clip(frames.numpy(), mix, spec.sample_rate, spec)
    row = summarise({cache_text: results})[cache_text]
    return {**row, "wall_s": wall, "transformer_s": timer.seconds,
            "skipped": counter.skipped / max(counter.skipped + counter.computed, 1)}


def format_rows(steps: int, rows: dict) -> list[str]:
    base = rows["none"]
    lines = [f"{'steps':>5}  {'cache':<16} {'skipped':>7} {'wall':>6} {'model':>6}  "
             + "  ".join(f"{name:>13} {'Δ':>6}" for name in WATCHED) + "  within 0.05"]
    for name, row in rows.items():
        deltas = {metric: row[metric] - base[metric] for metric in WATCHED if row[metric] is not None}
        cells = "  ".join(f"{row[metric]:13.3f} {deltas[metric]:+6.3f}" if metric in deltas else f"{'-':>13} {'-':>6}"
                          for metric in WATCHED)
        ok = "yes" if all(abs(delta) <= TOLERANCE for delta in deltas.values()) else "no"
        lines.append(f"{steps:5d}  {name:<16} {row['skipped']:7.1%} {row['wall_s'] / base['wall_s']:6.2f} "
                     f"{row['transformer_s'] / base['transformer_s']:6.2f}  {cells}  {ok}")
    return lines


def main() -> None:
    from mtv_core import demo
    from mtv_lab.evaluation.ablations import load_model_set
    from mtv_lab.world import world_clips

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=20, help="clips in the world when it is written")
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--caches", nargs="+", default=["fbc:0.3", "taylorseer:2"])
    parser.add_argument("--reference-seed", type=int, help="also render uncached with this seed (instead of 0): how "
                                                                "far the metrics move with the seed alone")
    args = parser.parse_args()

    if not args.world.exists():
        subprocess.run([sys.executable, "-m", "mtv_lab", "world", "--out", str(args.world), "--clips", str(args.clips),
                        "--seed", "1", "--frames", "72"], check=True, cwd=REPO)
    models = load_model_set(demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC)
    specs = world_clips(args.world)
    clips = encode_clips(models, args.world, specs)
    args.out.mkdir(parents=True, exist_ok=True)
    table, lines = {}, []
    for steps in args.steps:
        rows = {}
        for cache_text in ["none", *args.caches]:
            rows[cache_text] = run_variant(models, clips, specs, steps, cache_text)
            print(f"steps {steps} {cache_text}: {json.dumps(rows[cache_text])}", flush=True)
        if args.reference_seed is not None:
            name = f"none, seed {args.reference_seed}"
            rows[name] = run_variant(models, clips, specs, steps, "none", args.reference_seed)
            print(f"steps {steps} {name}: {json.dumps(rows[name])}", flush=True)
        table[steps] = rows
        lines += format_rows(steps, rows)
    print(f"{len(specs)} clips; skipped = joint self-attentions not computed; wall = render time (sampling and decoding) / uncached; "
          "model = time inside the transformer / uncached")
    print("\n".join(lines))
    (args.out / "caches.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
