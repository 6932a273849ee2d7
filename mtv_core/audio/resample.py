"""Band-limited resampling with julius, for whole signals and for signals that arrive in blocks."""

import julius
import torch
import torch.nn.functional as F


def resample(samples: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resamples `samples` [..., T] from `orig_rate` to `new_rate` (windowed-sinc, julius defaults)."""
    if orig_rate == new_rate:
        return samples

    return julius.resample_frac(samples, int(orig_rate), int(new_rate))


class StreamResampler:
    """Resamples a [C, T] signal given block by block; the concatenated output equals `resample` on the whole.

    julius computes output block b (of `new` samples) from input samples [b*old - width, b*old + old + width),
    with the signal's first and last samples repeated past its ends. This class keeps just enough input to
    produce every block whose window is complete, so memory stays bounded by the block size.
    """
    def __init__(self, orig_rate: int, new_rate: int):

        self._identity = orig_rate == new_rate
        self._julius = julius.ResampleFrac(int(orig_rate), int(new_rate))
        self._pending = None
        self._input_length = 0
        self._emitted = 0

    def push(self, block: torch.Tensor) -> torch.Tensor:
        if self._identity:
            return block
        if self._pending is None:
            left_pad = block[:, :1].expand(-1, self._julius._width)
            self._pending = torch.cat([left_pad, block], dim=1)
        else:
            self._pending = torch.cat([self._pending, block], dim=1)
        self._input_length += block.shape[1]
        return self._emit_complete_blocks()

    def flush(self) -> torch.Tensor:
        """Returns the remaining output; the total length is floor(T * new / old), as julius gives."""
        if self._identity or self._pending is None:
            return torch.zeros(0)
        julius = self._julius
        right_pad = self._pending[:, -1:].expand(-1, julius._width + julius.old_sr)
        self._pending = torch.cat([self._pending, right_pad], dim=1)
        tail = self._emit_complete_blocks()
        total = (julius.new_sr * self._input_length) // julius.old_sr
        keep = total - (self._emitted - tail.shape[1])
        self._pending = None
        return tail[:, :keep]

    def _emit_complete_blocks(self) -> torch.Tensor:
        julius = self._julius
        window = 2 * julius._width + julius.old_sr
        channels, available = self._pending.shape
        num_blocks = (available - window) // julius.old_sr + 1 if available >= window else 0
        if num_blocks == 0:
            return self._pending.new_zeros(channels, 0)
        used = (num_blocks - 1) * julius.old_sr + window
        kernel = julius.kernel.to(self._pending.dtype)
        blocks = F.conv1d(self._pending[:, None, :used], kernel, stride=julius.old_sr)
        out = blocks.transpose(1, 2).reshape(channels, -1)
        self._pending = self._pending[:, num_blocks * julius.old_sr:]
        self._emitted += out.shape[1]
        return out
