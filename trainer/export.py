"""`python -m trainer export --merge`: a base MTV model with LoRA adapters merged in, as one plain model file."""

from __future__ import annotations

import sys
from pathlib import Path

from mtv_core import lora
from mtv_core.checkpoints import load_mtv_model, save_mtv_model
from mtv_core.models.fp8 import dequantized_state

from .errors import TrainerError
from .outputs import refuse_existing

FP8_NOTE = ("the base stores its blocks' Linear weights as fp8; the merged file holds every weight plain, in the "
            "dtype of the base's fp8 scales (bf16 for `convert --dtype fp8`): generate with --fp8 to store them as fp8 again")


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
    state = model.state_dict()
    plain = dequantized_state(state)
    if len(plain) != len(state):
        (log or _note)(f"note: {base}: {FP8_NOTE}")
    return save_mtv_model(model, out, lora.merged(plain, loras))


def _note(line: str) -> None:
    print(line, file=sys.stderr)
