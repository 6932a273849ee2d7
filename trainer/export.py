"""`python -m trainer export --merge`: a base MTV model with LoRA adapters merged in, as one plain model file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtv_core import lora
from mtv_core.checkpoints import load_mtv_model, save_safetensors
from mtv_core.checkpoints.loading import MTV_KIND
from mtv_core.models.fp8 import dequantized_state

from .errors import TrainerError
from .outputs import OVERWRITE_HELP, refuse_existing

FP8_NOTE = ("the base stores its blocks' Linear weights as fp8; the merged file holds every weight plain, in the "
            "dtype of the base's fp8 scales (bf16 for `convert --dtype fp8`): generate with --fp8 to store them as fp8 again")


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer export",
                                     description="Merge LoRA adapters into their base model (one plain MTV model file). "
                                                 f"An fp8 base works: {FP8_NOTE}.")
    parser.add_argument("--merge", action="store_true", required=True, help="merge (the only export there is)")
    parser.add_argument("--base", type=Path, required=True, help="the MTV model the LoRAs were trained on")
    parser.add_argument("--lora", action="append", required=True, metavar="FILE[:STRENGTH]",
                        help="adapter at a strength (default 1); repeat to merge several")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write (an existing one only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return parser


def merge_loras(base: Path, loras, out: Path, overwrite: bool = False, log=None) -> Path:
    """Write `base` with [(adapter, strength)] merged into its weights to `out` (an existing file only with
    `overwrite`). An fp8 base's weights are dequantized first (FP8_NOTE); `log` gets that note (default: stderr)."""
    refuse_existing(out, overwrite)
    if not out.parent.is_dir():
        raise TrainerError(f"--out {str(out)!r}: the folder {str(out.parent)!r} does not exist; create it first")
    model = load_mtv_model(base)
    identity = lora.model_identity(model)
    for adapter, _ in loras:
        lora.check_fits(adapter, model, identity)
    config = {key: value for key, value in dict(model.config).items() if not key.startswith("_")}
    state = model.state_dict()
    plain = dequantized_state(state)
    if len(plain) != len(state):
        (log or _note)(f"note: {base}: {FP8_NOTE}")
    return save_safetensors(out, lora.merged(plain, loras), config, MTV_KIND)


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def run_export(argv: list[str]) -> Path:
    args = export_parser().parse_args(argv)
    loras = [lora.parse_lora_argument(text) for text in args.lora]
    return merge_loras(args.base, loras, args.out, args.overwrite)
