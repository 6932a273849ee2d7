"""`python -m mtv_lab <command>`, with the library's command-line conventions (one-line errors, quiet stops)."""

from mtv_core.cli import build_parser
from mtv_core.cli import main as run_command

COMMANDS = {
    "world": ("mtv_lab.cli.world", "write a synthetic audio-visual dataset with exact ground truth"),
    "evaluate": ("mtv_lab.cli.evaluate", "score generated videos against a synthetic world (AV-Align and exact measures)"),
}


def main(argv=None) -> int:
    return run_command(argv, build_parser(COMMANDS, "python -m mtv_lab", "MTV lab: synthetic world and sync evaluation"))
