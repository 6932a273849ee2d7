"""Who speaks when, for up to two speakers: voice activity (silero-vad), a voice embedding of each short window of
speech (resemblyzer's pretrained encoder, `voice_encoder`), two clusters, and turns no shorter than a minimum length.
The result is the (start, end, speaker) ranges that `parse_speaker_ranges` returns, and their text form, so a user
can correct them by hand. Speaker 1 is whoever speaks first; when the two clusters sound alike, all is speaker 1.

Both models ship inside their pip packages (nothing is downloaded), load once per process and run on the CPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..spec import SPEECH
from .io import Waveform, load_audio, to_mono
from .resample import resample
from .speakers import format_speaker_ranges, split_speakers
from .stems import Stems
from .voice_encoder import RATE, VoiceEncoder

PACKAGES = ("silero_vad", "resemblyzer")
INSTALL = 'pip install "comfyui-mtv[speakers]"'
WINDOW_SECONDS, HOP_SECONDS = 1.0, 0.5  # one voice embedding per window of speech
RELIABLE_SECONDS = 0.75  # shorter windows (short stretches of speech) are labelled by the clusters, not part of them
PAUSE_MS = 50  # a pause this long ends a stretch of speech, so fewer windows hold two voices
MIN_TURN_SECONDS = 1.0  # a change of speaker inside a stretch of speech lasts at least this long
JOIN_GAP_SECONDS = 0.5  # one speaker's stretches closer than this become one range
WIDEN_SECONDS = 0.15  # ranges reach this far into the silence around them (half a gap at most), so no onset is cut
ONE_VOICE_SIMILARITY = 0.64  # windows of the two clusters more alike than this on average: one voice
_VAD_LOCK = threading.Lock()  # the VAD model keeps state while it runs: one caller at a time


@dataclass(frozen=True)
class Diarization:
    """Speaker ranges found in a recording. `voices` is 0 (no speech), 1 or 2; `similarity` is the mean cosine
    similarity between the windows of the two clusters (None with fewer than two windows of speech)."""
    ranges: list
    voices: int
    similarity: float | None
    duration: float

    @property
    def text(self) -> str:
        """The ranges as "0.00-2.50:1, 2.50-5.00:2", to read, edit and give back as speaker ranges."""
        return format_speaker_ranges(self.ranges)

    def summary(self) -> str:
        if self.voices == 0:
            return "found no speech; everything stays with speaker 1"
        if self.voices == 1:
            return f"found one voice only{self._why_one()}; everything stays with speaker 1: {self.text}"
        return f"found two voices ({self.similarity:.2f} alike): {self.text}"

    def _why_one(self) -> str:
        if self.similarity is None:
            return ""
        if self.similarity > ONE_VOICE_SIMILARITY:
            return f" (its two most different groups of speech are {self.similarity:.2f} alike, above {ONE_VOICE_SIMILARITY})"
        return " (the second group of speech never made a turn of its own)"


def require_speaker_models() -> None:
    """Raises a ConfigError naming the install command when silero-vad or resemblyzer is missing."""
    for name in PACKAGES:
        _package_folder(name)


def diarize_file(path) -> Diarization:
    """`diarize` on an audio file (any format `load_audio` reads)."""
    return diarize(load_audio(path, sample_rate=RATE, mono=True))


def diarize(waveform: Waveform) -> Diarization:
    """Splits the speech of `waveform` (any rate, any channels) between at most two speakers."""
    require_speaker_models()
    samples = resample(to_mono(waveform).samples[0].float(), waveform.sample_rate, RATE)
    duration = samples.shape[-1] / RATE
    regions = speech_regions(samples)
    windows = _windows(regions)
    if not windows:
        return Diarization([], 0, None, duration)
    embeddings = _voice_encoder().embed([samples[round(start * RATE):round(end * RATE)] for start, end, _ in windows])
    labels, similarity = _labelled(embeddings, np.array([end - start for start, end, _ in windows]))
    if similarity is not None and similarity > ONE_VOICE_SIMILARITY:
        labels = np.zeros_like(labels)
    turns = _turns(regions, windows, labels)
    voices = len({speaker for _, _, speaker in turns})
    return Diarization(_rounded(_widened(turns, duration)), voices, similarity, duration)


def split_found_speakers(stems: Stems) -> tuple[Stems, Diarization]:
    """The speech stem split between the speakers `diarize` finds in it, and what it found."""
    found = diarize(stems.waveform(SPEECH))
    return split_speakers(stems, found.ranges), found


def speech_regions(samples: torch.Tensor) -> list[tuple[float, float]]:
    """(start, end) seconds of speech in a 16 kHz mono signal, by silero-vad."""
    get_speech_timestamps = _import("silero_vad").get_speech_timestamps
    with _VAD_LOCK, torch.inference_mode():
        found = get_speech_timestamps(samples, _vad_model(), sampling_rate=RATE, min_silence_duration_ms=PAUSE_MS)
    return [(stamp["start"] / RATE, stamp["end"] / RATE) for stamp in found]


def two_clusters(embeddings: np.ndarray, rounds: int = 20) -> tuple[np.ndarray, float | None]:
    """Labels 0/1 from spherical k-means on unit vectors (seeded by two very different windows, found from the
    mean), and how alike the two groups are: the mean cosine similarity of a window of one to a window of the other
    (on test voices it told one voice saying different things from two voices better than the centres' similarity)."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int), None
    first = int(np.argmin(embeddings @ embeddings.mean(axis=0)))
    second = int(np.argmin(embeddings @ embeddings[first]))
    centres = embeddings[[first, second]]
    for _ in range(rounds):
        labels = np.argmax(embeddings @ centres.T, axis=1)
        if labels.min() == labels.max():
            return np.zeros(len(embeddings), dtype=int), 1.0
        updated = _centres(embeddings, labels)
        if np.allclose(updated, centres):
            break
        centres = updated
    return labels, float((embeddings[labels == 0] @ embeddings[labels == 1].T).mean())


def _labelled(embeddings: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Two clusters of the windows long enough to trust (all, if none is), every window labelled by the nearer centre."""
    reliable = lengths >= RELIABLE_SECONDS
    trusted = embeddings[reliable] if reliable.any() else embeddings
    labels, similarity = two_clusters(trusted)
    if labels.min() == labels.max():
        return np.zeros(len(embeddings), dtype=int), similarity
    return np.argmax(embeddings @ _centres(trusted, labels).T, axis=1), similarity


def _centres(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    means = np.stack([embeddings[labels == label].mean(axis=0) for label in (0, 1)])
    return means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)


def _windows(regions: list) -> list[tuple[float, float, int]]:
    """(start, end, region) windows of WINDOW_SECONDS spread evenly over each region; a shorter region is one window."""
    windows = []
    for index, (start, end) in enumerate(regions):
        count = max(1, int(np.ceil((end - start - WINDOW_SECONDS) / HOP_SECONDS)) + 1)
        length = min(WINDOW_SECONDS, end - start)
        windows += [(float(first), float(first) + length, index) for first in np.linspace(start, end - length, count)]
    return windows


def _turns(regions: list, windows: list, labels: np.ndarray) -> list[tuple[float, float, int]]:
    """Each region cut where its windows' label changes, short turns inside a region given to their neighbours,
    one speaker's close stretches joined, and speakers numbered by who speaks first."""
    pieces = []
    for index, (start, end) in enumerate(regions):
        own = [(first, last, label) for (first, last, region), label in zip(windows, labels) if region == index]
        pieces += _absorb_short(_region_turns(start, end, own))
    joined = _joined(pieces)
    number = {joined[0][2]: 1, 1 - joined[0][2]: 2}
    return [(start, end, number[label]) for start, end, label in joined]


def _region_turns(start: float, end: float, windows: list) -> list[tuple[float, float, int]]:
    """A region cut midway between the centres of neighbouring windows of different labels."""
    turns, turn_start = [], start
    for (first, last, label), (next_first, next_last, next_label) in zip(windows, windows[1:]):
        if label != next_label:
            cut = (first + last + next_first + next_last) / 4
            turns.append((turn_start, cut, label))
            turn_start = cut
    turns.append((turn_start, end, windows[-1][2]))
    return turns


def _absorb_short(turns: list) -> list[tuple[float, float, int]]:
    """Gives the shortest turn under MIN_TURN_SECONDS to its longer neighbour, again until none is that short."""
    while len(turns) > 1:
        index = min(range(len(turns)), key=lambda i: turns[i][1] - turns[i][0])
        start, end, _ = turns[index]
        if end - start >= MIN_TURN_SECONDS:
            break
        taker = max((i for i in (index - 1, index + 1) if 0 <= i < len(turns)), key=lambda i: turns[i][1] - turns[i][0])
        turns = [*turns[:index], *turns[index + 1:]]
        taker -= taker > index
        turns[taker] = (min(start, turns[taker][0]), max(end, turns[taker][1]), turns[taker][2])
        turns = _joined(turns)
    return turns


def _joined(turns: list) -> list[tuple[float, float, int]]:
    """Neighbouring turns of one label less than JOIN_GAP_SECONDS apart, as one."""
    joined = [turns[0]]
    for start, end, label in turns[1:]:
        if joined[-1][2] == label and start - joined[-1][1] < JOIN_GAP_SECONDS:
            joined[-1] = (joined[-1][0], end, label)
        else:
            joined.append((start, end, label))
    return joined


def _widened(turns: list, duration: float) -> list[tuple[float, float, int]]:
    """Each turn reaching WIDEN_SECONDS further on both sides, but at most halfway to its neighbours."""
    edges = [0.0, *((end + start) / 2 for (_, end, _), (start, _, _) in zip(turns, turns[1:])), duration]
    return [(max(start - WIDEN_SECONDS, edges[index]), min(end + WIDEN_SECONDS, edges[index + 1]), speaker)
            for index, (start, end, speaker) in enumerate(turns)]


def _rounded(turns: list) -> list[tuple[float, float, int]]:
    """Ranges to the hundredth of a second, as the text form writes them."""
    rounded = [(round(start, 2), round(end, 2), speaker) for start, end, speaker in turns]
    return [(start, end, speaker) for start, end, speaker in rounded if end > start]


@lru_cache(maxsize=1)
def _voice_encoder() -> VoiceEncoder:
    return VoiceEncoder.from_file(_package_folder("resemblyzer") / "pretrained.pt")


@lru_cache(maxsize=1)
def _vad_model():
    return _import("silero_vad").load_silero_vad()


def _import(name: str):
    threads = torch.get_num_threads()
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise _missing(name) from error
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets the whole process to one CPU thread


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise _missing(name)
    return Path(list(spec.submodule_search_locations)[0])


def _missing(name: str) -> ConfigError:
    return ConfigError(f"finding the speakers by themselves needs the {name} package, which is not installed; "
                       f"install it with {INSTALL}")
