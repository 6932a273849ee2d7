"""`python -m mtv_core queue`: run an API-format workflow on a ComfyUI server, or a jobs file on several.

The command is the mtv_queue application's (its options, its run); this module hands over to it, and says what to
install when the packages it talks to servers through are missing."""

from mtv_queue.options import add_arguments  # argparse only: the help needs no other package

from ..errors import ConfigError

__all__ = ["add_arguments", "run"]

QUEUE_PACKAGES = {"requests": "requests", "urllib3": "urllib3", "websocket": "websocket-client"}


def run(args) -> int:
    try:
        from mtv_queue.command import run as run_queue
    except ModuleNotFoundError as error:
        if error.name not in QUEUE_PACKAGES:
            raise
        raise ConfigError(f"the queue command needs the {QUEUE_PACKAGES[error.name]} package, which is not installed; "
                          'pip install "comfyui-mtv[queue]"') from None
    return run_queue(args)
