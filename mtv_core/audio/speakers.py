"""A second speaker: its own file, or the speech stem split by time ranges ("0-2.5:1, 2.5-5:2"), given by hand or
found by `diarize` (asked for with the word "auto" where ranges are taken)."""

import re
from dataclasses import replace

import torch

from ..errors import AudioInputError, ConfigError
from ..spec import SPEECH, SPEECH2
from .io import Waveform, load_audio
from .resample import resample
from .stems import Stems, align_streams

AUTO = "auto"  # instead of ranges: find the speakers in the speech
RAMP_SECONDS = 0.005  # short fades at range edges, so a cut does not become a click
_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*:\s*([12])\s*$")


def parse_speaker_ranges(text: str) -> list:
    """Parses "start-end:speaker, ..." (seconds; speaker 1 or 2) into sorted (start, end, speaker) tuples."""
    ranges = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = _RANGE.match(part)
        if not match:
            raise ConfigError(f"speaker range {part!r} is not of the form 'start-end:speaker' (e.g. '0-2.5:1, 2.5-5:2').")
        start, end, speaker = float(match[1]), float(match[2]), int(match[3])
        if end <= start:
            raise ConfigError(f"speaker range {part!r} ends before it starts; write start-end with end > start.")
        ranges.append((start, end, speaker))
    ranges.sort()
    for (_, end, _), (start, _, _) in zip(ranges, ranges[1:]):
        if start < end:
            raise ConfigError(f"speaker ranges overlap at {start} s; give each moment to one speaker.")
    return ranges


def is_auto(text: str) -> bool:
    """Whether speaker ranges text asks for the speakers to be found instead."""
    return text.strip().lower() == AUTO


def format_speaker_ranges(ranges) -> str:
    """The text form `parse_speaker_ranges` reads: "0.00-2.50:1, 2.50-5.00:2" (seconds to the hundredth)."""
    return ", ".join(f"{start:.2f}-{end:.2f}:{speaker}" for start, end, speaker in ranges)


def split_speakers(stems: Stems, ranges) -> Stems:
    """Moves the speech inside speaker-2 ranges to "speech2"; everything else stays with speaker 1."""
    if isinstance(ranges, str):
        ranges = parse_speaker_ranges(ranges)
    if stems.flags.get(SPEECH):
        raise AudioInputError(f"cannot split speakers: the speech stem is {stems.flags[SPEECH]}.")
    speech = stems.streams[SPEECH]
    mask = _speaker_two_mask(ranges, speech.shape[-1], stems.sample_rate)
    return replace(stems, streams={**stems.streams, SPEECH: speech * (1 - mask), SPEECH2: speech * mask})


def add_second_speaker(stems: Stems, second) -> Stems:
    """Adds speaker 2 from its own recording: a file, or a Waveform (resampled; a length off by up to 50 ms is
    padded or cut)."""
    if isinstance(second, Waveform):
        source, second = "second speaker", resample(second.samples, second.sample_rate, stems.sample_rate)
    else:
        source, second = str(second), load_audio(second, sample_rate=stems.sample_rate).samples
    channels = stems.streams[SPEECH].shape[0]
    if second.shape[0] != channels:
        second = second.mean(dim=0, keepdim=True).expand(channels, -1)
    streams = {name: track for name, track in stems.streams.items() if name != SPEECH2}
    sources = {name: "stems" for name in streams}
    sources[SPEECH2] = source
    aligned = align_streams({**streams, SPEECH2: second}, stems.sample_rate, sources)
    return replace(stems, streams=aligned.streams)


def _speaker_two_mask(ranges, num_samples: int, sample_rate: int) -> torch.Tensor:
    return speaker_two_gain(ranges, sample_rate, num_samples)(0, num_samples)


def speaker_two_gain(ranges, sample_rate: int, num_samples: int | None = None):
    """(first sample, count) -> the share of each sample that belongs to speaker 2: 1 inside speaker-2 ranges, 0
    elsewhere, with short fades at the edges. Works block by block, so a long recording is never held whole."""
    if isinstance(ranges, str):
        ranges = parse_speaker_ranges(ranges)
    ramp = max(1, round(RAMP_SECONDS * sample_rate))
    fade = torch.linspace(0, 1, ramp + 2)[1:-1]
    spans = []
    for start, end, speaker in ranges:
        first, last = round(start * sample_rate), round(end * sample_rate)
        if num_samples is not None:
            if first >= num_samples:
                raise ConfigError(f"speaker range {start}-{end} s starts after the audio ends ({num_samples / sample_rate:.3f} s).")
            last = min(last, num_samples)
        if speaker == 2:
            spans.append((first, last))

    def gain(first: int, count: int) -> torch.Tensor:
        mask = torch.zeros(count)
        for start, end in spans:
            low, high = max(start, first), min(end, first + count)
            if low >= high:
                continue
            edge, index = min(ramp, end - start), torch.arange(low, high)
            values = torch.ones(high - low)
            rising, falling = index - start < edge, end - 1 - index < edge
            values[rising] = fade[(index - start)[rising]]
            values[falling] *= fade.flip(0)[-edge:][(index - (end - edge))[falling]]
            mask[low - first:high - first] = values
        return mask

    return gain
