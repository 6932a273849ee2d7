"""`Stems`: the audio streams MTV is conditioned on (the demixed stems and a second speaker), at one sample rate
and one length."""

import hashlib
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import AudioInputError
from ..spec import SPEECH, STEMS, STREAMS
from .io import Waveform, load_audio
from .levels import DEFAULT_SILENCE_DBFS, measure
from .resample import resample


@dataclass
class Stems:
    """Waveforms [C, T] keyed by stream name (`spec.STREAMS`): the stems, and "speech2" for a second speaker.

    `flags` explains streams that are not real content (e.g. {"effects": "not separated: 4-stem model"});
    such streams are all zeros and `present` is False for them. `source_id` is the content hash of the
    audio the stems came from, so a consumer can tell stems of another file apart.
    """
    streams: dict
    sample_rate: int
    source_id: str = ""
    flags: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.streams) - set(STREAMS)
        if unknown:
            raise AudioInputError(f"unknown stream names {sorted(unknown)}; use {list(STREAMS)}.")
        lengths = {name: track.shape[-1] for name, track in self.streams.items()}
        if len(set(lengths.values())) > 1:
            raise AudioInputError(f"stems have different lengths {lengths} (samples at {self.sample_rate} Hz); use align_streams or stems_from_files to match them.")

    @property
    def num_samples(self) -> int:
        return next(iter(self.streams.values())).shape[-1] if self.streams else 0

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def present(self) -> dict:
        return {name: name in self.streams and name not in self.flags for name in STREAMS}

    def levels(self, silence_dbfs: float = DEFAULT_SILENCE_DBFS) -> dict:
        return {name: measure(track, self.sample_rate, silence_dbfs) for name, track in self.streams.items()}

    def silent_streams(self, silence_dbfs: float = DEFAULT_SILENCE_DBFS) -> set:
        return {name for name, report in self.levels(silence_dbfs).items() if report.silent}

    def waveform(self, name: str) -> Waveform:
        return Waveform(self.streams[name], self.sample_rate)


class ContentHasher:
    """Hashes [C, n] blocks in time-major order, so blocks hashed one by one match the whole signal."""
    def __init__(self, sample_rate: int):
        self._digest = hashlib.sha256(str(int(sample_rate)).encode())

    def update(self, block: torch.Tensor) -> None:
        self._digest.update(block.detach().to("cpu", torch.float32).T.contiguous().numpy().tobytes())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:16]


def content_hash(samples: torch.Tensor, sample_rate: int) -> str:
    """A short hash of the audio content (float32 samples [C, T] and rate), independent of file names."""
    hasher = ContentHasher(sample_rate)
    hasher.update(samples)
    return hasher.hexdigest()


def stems_from_files(speech=None, effects=None, music=None, speech2=None, sample_rate: Optional[int] = None) -> Stems:
    """Pre-separated stems, one file per stream; missing stems become flagged silence.

    Streams are resampled to one rate (the first file's unless `sample_rate` is given). Lengths may differ
    by up to 50 ms (codec padding) and are then padded or cut to the speech (else the first) stream;
    larger differences are an error.
    """
    paths = {name: path for name, path in zip(STREAMS, (speech, speech2, effects, music)) if path}
    if not paths:
        raise AudioInputError("no stem files given; pass at least one of speech, effects, music.")
    waveforms = {}
    for name, path in paths.items():
        rate = sample_rate or (next(iter(waveforms.values())).sample_rate if waveforms else None)
        waveforms[name] = load_audio(path, sample_rate=rate)
    return stems_from_waveforms(waveforms, sources={n: str(p) for n, p in paths.items()})


def stems_from_waveforms(waveforms: dict, sample_rate: Optional[int] = None, sources: Optional[dict] = None) -> Stems:
    """Pre-separated stems given as Waveforms ({stream: Waveform}); resampled to one rate (the first's unless
    `sample_rate` is given), aligned as `align_streams` aligns; missing required stems become flagged silence."""
    if not waveforms:
        raise AudioInputError("no stems given; give at least one of speech, effects, music.")
    rate = sample_rate or next(iter(waveforms.values())).sample_rate
    tracks = {name: resample(w.samples, w.sample_rate, rate) for name, w in waveforms.items()}
    return align_streams(tracks, rate, sources)


def align_streams(tracks: dict, sample_rate: int, sources: Optional[dict] = None, tolerance_seconds: float = 0.05) -> Stems:
    """Builds `Stems` from {stream: [C, T]} of nearly equal length; absent stems become flagged silence."""
    sources = sources or {name: name for name in tracks}
    reference_name = SPEECH if SPEECH in tracks else next(iter(tracks))
    length = tracks[reference_name].shape[-1]
    channels = max(track.shape[0] for track in tracks.values())
    aligned = {}
    for name, track in tracks.items():
        difference = track.shape[-1] - length
        if abs(difference) > tolerance_seconds * sample_rate:
            raise AudioInputError(
                f"stem {name} ({sources[name]}) is {track.shape[-1] / sample_rate:.3f} s long but {reference_name} "
                f"({sources[reference_name]}) is {length / sample_rate:.3f} s; give stems cut from the same audio."
            )
        track = torch.nn.functional.pad(track, (0, -difference)) if difference < 0 else track[:, :length]
        aligned[name] = track.expand(channels, -1).contiguous() if track.shape[0] == 1 < channels else track
    if len({t.shape[0] for t in aligned.values()}) > 1:
        raise AudioInputError(f"stems have incompatible channel counts { {n: t.shape[0] for n, t in aligned.items()} }; give mono or stereo files.")
    flags = {}
    for name in STEMS:
        if name not in aligned:
            aligned[name] = torch.zeros(channels, length)
            flags[name] = "not given"
    mix = sum(track for name, track in aligned.items() if name not in flags)
    return Stems(aligned, sample_rate, content_hash(mix, sample_rate), flags)
