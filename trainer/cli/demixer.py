"""`python -m trainer demixer --clips DIR [DIR ...] --out FILE`: fit a small HTDemucs (music / effect / dialog) to
clips with their stems."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import TrainerError
from ..outputs import OVERWRITE_HELP, refuse_existing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", required=True, type=Path, nargs="+",
                        help="folders holding <clip>_speech.wav, <clip>_effects.wav and <clip>_music.wav")
    parser.add_argument("--out", required=True, type=Path, help="the demixer .safetensors to write (an existing one only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--sample-rate", type=int, default=16000, help="the model's rate (inputs are resampled to it)")
    parser.add_argument("--segment", type=float, default=2.0, help="seconds per training window (and demixing window)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from mtv_core.checkpoints import write_demixer_file

    from ..demixer import read_stem_sets, train_demixer

    refuse_existing(args.out, args.overwrite)
    for name in ("steps", "batch_size", "sample_rate"):
        if getattr(args, name) < 1:
            raise TrainerError(f"--{name.replace('_', '-')} {getattr(args, name)} must be at least 1")
    if not 0.5 <= args.segment <= 30:
        raise TrainerError(f"--segment {args.segment} is out of range; use 0.5 to 30 seconds (2 is the demo's)")
    sets = read_stem_sets(args.clips, args.sample_rate, int(args.segment * args.sample_rate))
    print(f"{len(sets)} clips with stems; training {args.steps} steps", flush=True)
    demixer_file = train_demixer(sets, args.sample_rate, args.segment, args.steps, args.batch_size, args.lr, args.seed,
                                 log=lambda line: print(line, flush=True))
    write_demixer_file(demixer_file, args.out)
    print(f"wrote {args.out}")
    return 0
