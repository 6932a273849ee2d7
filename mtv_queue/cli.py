"""`python -m mtv_core queue`: run an API-format workflow on a ComfyUI server, or a jobs file on several.

The library's command line lists this module by name; it takes the options (argparse only, so the help needs no
other package) and hands the run over, saying what to install when the packages it talks to servers through are
missing."""

from mtv_core.errors import ConfigError

from .options import add_arguments

__all__ = ["add_arguments", "run"]

QUEUE_PACKAGES = {"requests": "requests", "urllib3": "urllib3", "websocket": "websocket-client"}


def run(args) -> int:
    try:
        from .command import run as run_queue
    except ModuleNotFoundError as error:
        if error.name not in QUEUE_PACKAGES:
            raise
        raise ConfigError(f"the queue command needs the {QUEUE_PACKAGES[error.name]} package, which is not installed; "
                          'pip install "comfyui-mtv[queue]"') from None
    return run_queue(args)
