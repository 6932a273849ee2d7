"""Signal levels in dBFS (full scale = 1.0), silence detection and optional loudness normalisation."""

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..spec import SILENCE_DBFS

DEFAULT_SILENCE_DBFS = SILENCE_DBFS
FLOOR_DBFS = -200.0


def amplitude_to_dbfs(amplitude) -> float:
    amplitude = torch.as_tensor(amplitude, dtype=torch.float64)
    return float(20.0 * torch.log10(amplitude.clamp_min(10 ** (FLOOR_DBFS / 20))))


def peak_dbfs(samples: torch.Tensor) -> float:
    return amplitude_to_dbfs(samples.abs().max()) if samples.numel() else FLOOR_DBFS


def rms_dbfs(samples: torch.Tensor) -> float:
    return amplitude_to_dbfs(samples.double().pow(2).mean().sqrt()) if samples.numel() else FLOOR_DBFS


def windowed_rms_dbfs(samples: torch.Tensor, sample_rate: int, window_seconds: float = 0.5) -> torch.Tensor:
    """RMS level of each non-overlapping window (all channels together), in dBFS; the last window may be short."""
    window = max(1, round(window_seconds * sample_rate))
    power = samples.double().pow(2).mean(dim=0)
    num_windows = -(-power.shape[0] // window)
    padded = torch.nn.functional.pad(power, (0, num_windows * window - power.shape[0]))
    counts = torch.full((num_windows,), float(window), dtype=torch.float64)
    counts[-1] = power.shape[0] - (num_windows - 1) * window
    mean_power = padded.view(num_windows, window).sum(dim=1) / counts
    return (10.0 * torch.log10(mean_power.clamp_min(10 ** (FLOOR_DBFS / 10)))).float()


@dataclass
class LevelReport:
    """Whole-track peak and RMS, the loudest window's RMS, and whether the track counts as silent."""

    peak_dbfs: float
    rms_dbfs: float
    max_window_rms_dbfs: float
    silent: bool

    def as_dict(self) -> dict:
        return {"peak_dbfs": round(self.peak_dbfs, 2), "rms_dbfs": round(self.rms_dbfs, 2), "max_window_rms_dbfs": round(self.max_window_rms_dbfs, 2), "silent": self.silent}


class LevelMeter:
    """Accumulates levels over blocks, so a track never has to be held whole to be measured.

    A track is silent when no window reaches `silence_dbfs`: a short line of dialogue in a long silent
    stem is still present.
    """

    def __init__(self, sample_rate: int, silence_dbfs: float = DEFAULT_SILENCE_DBFS, window_seconds: float = 0.5):
        self.sample_rate, self.silence_dbfs = sample_rate, silence_dbfs
        self.window = max(1, round(window_seconds * sample_rate))
        self._peak, self._energy, self._count, self._max_window_power = 0.0, 0.0, 0, 0.0
        self._carry = None

    def update(self, block: torch.Tensor) -> None:
        block = block.double()
        if block.numel() == 0:
            return
        self._peak = max(self._peak, float(block.abs().max()))
        power = block.pow(2).mean(dim=0)
        self._energy += float(power.sum())
        self._count += power.shape[0]
        if self._carry is not None:
            power = torch.cat([self._carry, power])
        whole = power.shape[0] // self.window * self.window
        if whole:
            self._max_window_power = max(self._max_window_power, float(power[:whole].view(-1, self.window).mean(dim=1).max()))
        self._carry = power[whole:]

    def report(self) -> LevelReport:
        max_window = self._max_window_power
        if self._carry is not None and self._carry.numel():
            max_window = max(max_window, float(self._carry.mean()))
        mean_power = self._energy / max(self._count, 1)
        max_window_db = amplitude_to_dbfs(max_window**0.5)
        return LevelReport(amplitude_to_dbfs(self._peak), amplitude_to_dbfs(mean_power**0.5), max_window_db, max_window_db < self.silence_dbfs)


def measure(samples: torch.Tensor, sample_rate: int, silence_dbfs: float = DEFAULT_SILENCE_DBFS) -> LevelReport:
    meter = LevelMeter(sample_rate, silence_dbfs)
    meter.update(samples)
    return meter.report()


def is_silent(samples: torch.Tensor, sample_rate: int, silence_dbfs: float = DEFAULT_SILENCE_DBFS) -> bool:
    return measure(samples, sample_rate, silence_dbfs).silent


def normalize_loudness(samples: torch.Tensor, target_dbfs: float = -20.0, mode: str = "rms", peak_limit_dbfs: float = -1.0) -> torch.Tensor:
    """Scales to `target_dbfs` RMS (or peak), never letting the peak exceed `peak_limit_dbfs`; silence stays silence."""
    if mode not in ("rms", "peak"):
        raise ConfigError(f"loudness mode {mode!r} is unknown; use 'rms' or 'peak'.")
    current = rms_dbfs(samples) if mode == "rms" else peak_dbfs(samples)
    if current <= FLOOR_DBFS:
        return samples
    gain_db = min(target_dbfs - current, peak_limit_dbfs - peak_dbfs(samples))
    return samples * (10 ** (gain_db / 20))


class FrameLevels:
    """RMS level of each video frame's stretch of a track, accumulated block by block: frame n covers the samples
    from n x rate / fps up to (n + 1) x rate / fps. What the sampler reads to tell where somebody speaks."""

    def __init__(self, sample_rate: int, fps: float):
        self.sample_rate, self.fps = sample_rate, fps
        self.energy = torch.zeros(0, dtype=torch.float64)
        self.counts = torch.zeros(0, dtype=torch.float64)
        self.position = 0

    def update(self, mono: torch.Tensor) -> None:
        samples = mono.reshape(-1).double()
        if not samples.numel():
            return
        index = torch.arange(self.position, self.position + samples.numel(), dtype=torch.float64)
        frames = torch.floor(index * self.fps / self.sample_rate).long()
        self.position += samples.numel()
        size = int(frames[-1]) + 1
        if size > self.energy.numel():
            grow = size - self.energy.numel()
            self.energy = torch.cat([self.energy, torch.zeros(grow, dtype=torch.float64)])
            self.counts = torch.cat([self.counts, torch.zeros(grow, dtype=torch.float64)])
        self.energy.index_add_(0, frames, samples.pow(2))
        self.counts.index_add_(0, frames, torch.ones_like(samples))

    def levels(self, count: int) -> torch.Tensor:
        """(count,) float32 dBFS; a frame with no samples (past the track's end) is at the floor."""
        energy, counts = torch.zeros(count, dtype=torch.float64), torch.zeros(count, dtype=torch.float64)
        kept = min(count, self.energy.numel())
        energy[:kept], counts[:kept] = self.energy[:kept], self.counts[:kept]
        power = torch.where(counts > 0, energy / counts.clamp_min(1), torch.zeros_like(energy))
        return (10.0 * torch.log10(power.clamp_min(10 ** (FLOOR_DBFS / 10)))).float()
