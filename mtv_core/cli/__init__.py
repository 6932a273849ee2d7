"""`python -m mtv_core <command>`: each command lives in its own module with `add_arguments` and `run`."""

import argparse
import importlib
import signal
import sys

from ..errors import MTVError

COMMANDS = {
    "convert": ("mtv_core.cli.convert", "convert an official MTV .pt or SAT 3d-vae.pt to safetensors"),
    "bench": ("mtv_core.cli.bench", "time and measure memory of the model"),
    "demix": ("mtv_core.cli.demix", "split audio into speech / effects / music stems"),
    "convert-demixer": ("mtv_core.cli.convert_demixer", "convert an HTDemucs .th file to safetensors"),
    "features": ("mtv_core.cli.features", "encode stems with wav2vec2 as MTV expects"),
    "generate": ("mtv_core.cli.generate", "make a video from audio and a prompt"),
    "models": ("mtv_core.cli.models", "fetch the official models by name into ComfyUI's models folder, or list them"),
    "queue": ("mtv_queue.cli", "run an API-format workflow on a ComfyUI server and download its outputs"),
}


def build_parser(commands: dict = COMMANDS, prog: str = "python -m mtv_core",
                 description: str = "MTV audio-synchronized video tools") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in commands.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(run=module.run)
    return parser


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM) turned into the same unwinding as Ctrl-C, so partial files are cleaned up."""

    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


def _stop(number, frame):
    raise Stopped(number)


def main(argv=None, parser: argparse.ArgumentParser | None = None) -> int:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        previous = signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread: leave signals to whoever runs us
        previous = None
    try:
        return args.run(args) or 0
    except MTVError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        number = getattr(stop, "number", signal.SIGINT)
        print(f"\nstopped ({signal.Signals(number).name}); finished files are kept, partial ones removed", file=sys.stderr)
        return 128 + number
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
