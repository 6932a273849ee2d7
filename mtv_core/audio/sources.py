"""Where a stream's audio comes from: a stem file decoded block by block or a track in memory, resampled to 16 kHz
mono, optionally gated in time (the second speaker's share of a speech file)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..spec import SPEECH, SPEECH2, STEMS
from .io import Waveform, iter_audio_blocks, probe_audio, to_mono
from .resample import StreamResampler
from .speakers import speaker_two_gain
from .wav2vec import WAV2VEC_SAMPLE_RATE

BLOCK_SECONDS = 10.0


@dataclass
class StemSource:
    """A stream's audio: a file decoded block by block, or a track in memory; optionally gated in time (the second
    speaker's ranges). `blocks()` yields mono 16 kHz float32 blocks, the same whichever the source."""
    path: Optional[Path] = None
    samples: Optional[torch.Tensor] = None  # [C, T] when in memory
    sample_rate: int = 0
    gain: Optional[Callable[[int, int], torch.Tensor]] = None  # (first sample, count) at 16 kHz -> gains

    @classmethod
    def file(cls, path, gain=None) -> "StemSource":
        return cls(path=Path(path), gain=gain)

    @classmethod
    def tensor(cls, samples: torch.Tensor, sample_rate: int, gain=None) -> "StemSource":
        return cls(samples=samples, sample_rate=int(sample_rate), gain=gain)

    def blocks(self):
        rate, names, raw = self._native_blocks()
        resampler, position = StreamResampler(rate, WAV2VEC_SAMPLE_RATE), 0
        for block in raw:
            mono = resampler.push(to_mono(Waveform(block, rate, names)).samples)
            yield from self._gated(mono, position)
            position += mono.shape[-1]
        yield from self._gated(resampler.flush().reshape(1, -1), position)

    def _native_blocks(self):
        if self.samples is not None:
            step = max(1, int(BLOCK_SECONDS * self.sample_rate))
            return self.sample_rate, None, (self.samples[:, i:i + step] for i in range(0, self.samples.shape[-1], step))
        info = probe_audio(self.path)
        return info.sample_rate, info.channel_names, iter_audio_blocks(self.path, block_seconds=BLOCK_SECONDS)

    def _gated(self, mono: torch.Tensor, position: int):
        if mono.numel():
            block = mono.reshape(-1).float()
            yield block if self.gain is None else block * self.gain(position, block.numel())

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "audio in memory"


def file_sources(files: dict, flags: Optional[dict] = None, speaker_ranges: str = "") -> tuple[dict, dict]:
    """({stream: StemSource}, {stream: why it is silence}) for stem files ({stream: path}): `speaker_ranges`
    ("0-2.5:1, 2.5-5:2") moves the second speaker's share of the speech file to speech2, and a stem not given
    becomes flagged silence."""
    flags = dict(flags or {})
    sources = {name: StemSource.file(path) for name, path in files.items()}
    if speaker_ranges:
        share = speaker_two_gain(speaker_ranges, WAV2VEC_SAMPLE_RATE)
        sources[SPEECH2] = StemSource.file(files[SPEECH], gain=share)
        sources[SPEECH] = StemSource.file(files[SPEECH], gain=lambda first, count: 1 - share(first, count))
    for name in STEMS:
        if name not in sources:
            sources[name], flags[name] = next(iter(sources.values())), "not given"
    return sources, flags
