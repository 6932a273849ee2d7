"""A gate for the demixed speech stem: what a demixer leaks into it (music, effects) where nobody speaks is quiet
but not silent, and the model moves mouths to it. The gate silences the stem wherever its level has stayed below a
threshold for longer than a short hold, so pauses between words pass and leakage between lines does not.

The level is the mean power over the last `WINDOW_SECONDS`, looked at sample by sample, so the gate works on
blocks as they stream and any split into blocks gives the same output as one whole block. Before the first
sample the track counts as silent.
"""

import math

import torch

from ..errors import ConfigError

WINDOW_SECONDS = 0.02  # the level is measured over the last 20 ms
HOLD_SECONDS = 0.25  # the gate stays open this long after the level falls below the threshold
RAMP_SECONDS = 0.01  # and opens and closes over 10 ms, without clicks
OFF_DBFS = -200.0  # a gate this low passes everything: the stem stays as separated
_NEVER = -(2**62)  # the sample index of a loud sample that never was
_SUM_CHUNK = 1 << 14


def speech_gate(sample_rate: int, threshold_dbfs: float | None) -> "SpeechGate | None":
    """The gate for a level, checked; None for no level or OFF_DBFS."""
    if threshold_dbfs is None:
        return None
    gate = SpeechGate(sample_rate, threshold_dbfs)
    return None if threshold_dbfs <= OFF_DBFS else gate


class SpeechGate:
    """Silences a track (channels, samples) where it stays below `threshold_dbfs`; call it on consecutive blocks."""

    def __init__(self, sample_rate: int, threshold_dbfs: float):
        if isinstance(threshold_dbfs, bool) or not isinstance(threshold_dbfs, (int, float)) \
                or not math.isfinite(threshold_dbfs) or not -200 <= threshold_dbfs <= 0:
            raise ConfigError(f"speech gate {threshold_dbfs!r} dBFS is out of range; use a level in -200..0 dBFS "
                              "(-45 by default; -200 keeps the stem as separated)")
        self.window = max(2, round(WINDOW_SECONDS * sample_rate))
        self.hold = round(HOLD_SECONDS * sample_rate)
        self.ramp = max(2, round(RAMP_SECONDS * sample_rate))
        self.threshold_power = 10.0 ** (threshold_dbfs / 10.0)
        self._power_tail = torch.zeros(self.window - 1, dtype=torch.float64)
        self._open_tail = torch.zeros(self.ramp - 1, dtype=torch.float64)
        self._last_loud, self._position = _NEVER, 0

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        count = block.shape[1]
        if count == 0:
            return block
        power = torch.cat([self._power_tail, block.double().pow(2).mean(dim=0)])
        level = _trailing_means(power, self.window)
        positions = torch.arange(self._position, self._position + count)
        loud_at = torch.where(level >= self.threshold_power, positions, torch.full_like(positions, self._last_loud))
        last_loud = torch.cummax(torch.cat([torch.tensor([self._last_loud]), loud_at]), dim=0).values[1:]
        is_open = torch.cat([self._open_tail, (positions - last_loud <= self.hold).double()])
        gain = _trailing_means(is_open, self.ramp)
        self._power_tail, self._open_tail = power[count:], is_open[count:]
        self._last_loud, self._position = int(last_loud[-1]), self._position + count
        return block * gain.to(block.dtype)


def _trailing_means(values: torch.Tensor, window: int) -> torch.Tensor:
    """For a (window - 1) + n vector: the mean of each of the last n values with the window - 1 before it. The
    running sums restart every `_SUM_CHUNK` values: one sum over minutes of loud sound would swallow a quiet window."""
    count = values.shape[0] - (window - 1)
    means = values.new_empty(count)
    for start in range(0, count, _SUM_CHUNK):
        piece = values[start:start + _SUM_CHUNK + window - 1]
        sums = torch.cat([values.new_zeros(1), torch.cumsum(piece, dim=0)])
        means[start:start + piece.shape[0] - window + 1] = (sums[window:] - sums[:-window]) / window
    return means
