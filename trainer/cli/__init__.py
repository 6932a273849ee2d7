"""`python -m trainer <command>`: each command lives in its own module with `add_arguments` and `run`, as in
`python -m mtv_core`. Training is the command a bare `python -m trainer --stage NAME ...` runs."""

from __future__ import annotations

import sys

from mtv_core.cli import build_parser
from mtv_core.cli import main as run_command

COMMANDS = {
    "train": ("trainer.cli.train", "train MTV stage by stage (the default: `python -m trainer --stage NAME ...`)"),
    "prepare": ("trainer.cli.prepare", "turn video clips into an MTV training dataset"),
    "export": ("trainer.cli.export", "merge LoRA adapters into their base model"),
    "vae": ("trainer.cli.vae", "fit a small CogVideoX VAE to video clips (for a model trained from scratch)"),
    "demixer": ("trainer.cli.demixer", "train a small speech / effects / music demixer on clips with stems"),
}
HELP = ("-h", "--help")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in HELP:
        argv = ["train", *argv]
    parser = build_parser(COMMANDS, prog="python -m trainer", description="Fine-tune MTV on your own clips.")
    return run_command(argv, parser)
