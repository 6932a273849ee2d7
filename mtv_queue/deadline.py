"""One time limit for a whole run: every wait and every read takes what is left of it."""

from __future__ import annotations

import time

from mtv_core.errors import GenerationError

from .options import TIMEOUT


class Deadline:
    """`seconds` from now (None: no limit). Setting `stop` (a threading.Event) ends the run at the next wait or
    read."""

    def __init__(self, seconds: float | None, stop=None):
        self.end = None if seconds is None else time.monotonic() + seconds
        self.stop = stop

    def left(self, cap: float) -> float:
        """Seconds the next step may take: `cap`, or less when the run's end is nearer."""
        if self.stop is not None and self.stop.is_set():
            raise GenerationError("stopped")
        if self.end is None:
            return cap
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise GenerationError(f"gave up: the {TIMEOUT} has passed; the job may still be running on the server")
        return min(cap, remaining)

    def sleep(self, seconds: float) -> None:
        """Pause for up to `seconds`; a stop ends the pause at once."""
        pause = self.left(seconds)
        if self.stop is None:
            time.sleep(pause)
        else:
            self.stop.wait(pause)
