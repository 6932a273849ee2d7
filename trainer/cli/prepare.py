"""`python -m trainer prepare --clips DIR --out DIR --wav2vec PATH ...`: turn video clips into a training dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", required=True, type=Path, help="folder of video files (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder")
    parser.add_argument("--captions", type=Path, help="CSV or JSONL: clip file name, caption and/or structured fields, persons")
    parser.add_argument("--demixer", type=Path, action="append", help="demixer weights (repeat to ensemble); not needed with pre-separated stems")
    parser.add_argument("--wav2vec", type=Path, required=True, help="wav2vec2 folder or .safetensors")
    parser.add_argument("--vae", type=Path, help="CogVideoX VAE: pre-encode latents")
    parser.add_argument("--t5", type=Path, help="T5 folder: pre-encode captions")
    parser.add_argument("--size", type=int, nargs=2, default=(480, 720), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--scene-threshold", type=float, default=0.35, help="histogram difference (0..1) that counts as a cut")
    parser.add_argument("--device", default="cpu")


def run(args) -> int:
    from ..prepare import PrepareOptions, prepare_dataset

    options = {key: value for key, value in vars(args).items() if key not in ("command", "run")}
    print(prepare_dataset(PrepareOptions(**options)).summary())
    return 0
