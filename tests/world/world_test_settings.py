"""Settings of the small world the tests share (a helper module; conftest imports it too)."""

from mtv_lab.world import WorldSettings

SETTINGS = WorldSettings(seed=3, clips=6, frames=60)
