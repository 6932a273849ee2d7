"""`python -m trainer export --merge`: a base MTV model with LoRA adapters merged in, as one plain model file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtv_core import lora
from mtv_core.checkpoints import load_mtv_model, save_safetensors
from mtv_core.checkpoints.loading import MTV_KIND

from .errors import TrainerError


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer export",
                                     description="Merge LoRA adapters into their base model (one plain MTV model file).")
    parser.add_argument("--merge", action="store_true", required=True, help="merge (the only export there is)")
    parser.add_argument("--base", type=Path, required=True, help="the MTV model the LoRAs were trained on")
    parser.add_argument("--lora", action="append", required=True, metavar="FILE[:STRENGTH]",
                        help="adapter at a strength (default 1); repeat to merge several")
    parser.add_argument("--out", type=Path, required=True, help="new .safetensors file (never overwritten)")
    return parser


def merge_loras(base: Path, loras, out: Path) -> Path:
    """Write `base` with [(adapter, strength)] merged into its weights to `out`, which must not exist yet."""
    if out.exists():
        raise TrainerError(f"--out {str(out)!r} already exists; choose a new file name (nothing was written)")
    if not out.parent.is_dir():
        raise TrainerError(f"--out {str(out)!r}: the folder {str(out.parent)!r} does not exist; create it first")
    model = load_mtv_model(base)
    identity = lora.model_identity(model)
    for adapter, _ in loras:
        lora.check_fits(adapter, model, identity)
    config = {key: value for key, value in dict(model.config).items() if not key.startswith("_")}
    return save_safetensors(out, lora.merged(model.state_dict(), loras), config, MTV_KIND)


def run_export(argv: list[str]) -> Path:
    args = export_parser().parse_args(argv)
    loras = [lora.parse_lora_argument(text) for text in args.lora]
    return merge_loras(args.base, loras, args.out)
