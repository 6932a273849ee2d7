"""`python -m trainer vae --clips DIR --out FILE`: fit a (small) CogVideoX VAE to your clips."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..outputs import OVERWRITE_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", required=True, type=Path, help="folder of video clips (searched recursively)")
    parser.add_argument("--out", required=True, type=Path,
                        help="the VAE .safetensors to write (the format the loaders read; an existing one only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--init", type=Path, help="a VAE .safetensors to start from (default: a new small VAE)")
    parser.add_argument("--widths", type=int, nargs=4, default=(16, 32, 32, 32), help="channels of the 4 resolution levels")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decoder-only", action="store_true",
                        help="train the decoder alone (needs --init): the latents stay as they were, so a model "
                             "trained on them keeps working and draws what the sharper decoder makes of them")


def run(args) -> int:
    from ..vae import train_vae

    mse = train_vae(args)
    print(f"wrote {args.out} (final reconstruction mse {mse:.5f})")
    return 0
