"""`python -m trainer export --merge --base MODEL --lora FILE[:STRENGTH] --out FILE`: one plain MTV model file with
LoRA adapters merged in."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..outputs import OVERWRITE_HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merge", action="store_true", required=True, help="merge (the only export there is)")
    parser.add_argument("--base", type=Path, required=True,
                        help="the MTV model the LoRAs were trained on (an fp8 base works: the merged file is plain)")
    parser.add_argument("--lora", action="append", required=True, metavar="FILE[:STRENGTH]",
                        help="adapter at a strength (default 1); repeat to merge several")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write (an existing one only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def run(args) -> int:
    from mtv_core.checkpoints import parse_lora_argument

    from ..export import merge_loras

    loras = [parse_lora_argument(text) for text in args.lora]
    print(merge_loras(args.base, loras, args.out, args.overwrite))
    return 0
