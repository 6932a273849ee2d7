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
    parser.add_argument("--window-frames", type=int, default=9, help="frames per training window (1 + 4k)")
    parser.add_argument("--temporal-weight", type=float, default=0.0, metavar="W",
                        help="add W x the squared difference between the reconstruction's and the clip's change from "
                             "frame to frame (a steadier picture; 0 = off)")
    parser.add_argument("--latent-noise", type=float, default=0.0, metavar="S",
                        help="add noise of S x the latents' spread before decoding, so the decoder also draws "
                             "imperfect latents (a model's) steadily; 0 = off")


def run(args) -> int:
    from ..vae import train_vae

    mse = train_vae(args)
    print(f"wrote {args.out} (final reconstruction mse {mse:.5f})")
    return 0
