"""Command-line values checked before any work starts: one line naming the value, the accepted ones and the fix."""

from __future__ import annotations

import math

from ..errors import ConfigError
from ..pipeline.memory import resolve_device as check_device  # noqa: F401  (one rule for every command)


def check_range(option: str, value, low: float, high: float, whole: bool = False, fix: str = ""):
    """A finite number in [low, high] (a whole number when `whole`)."""
    if value is None:
        return value
    ok = isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high and (not whole or float(value).is_integer())
    if not ok:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{option} {value!r} is out of range; use {kind} in {low:g}..{high:g}{'; ' + fix if fix else ''}")
    return value
