"""Synthetic stems with known structure: voiced syllables (speech), percussive hits (effects), a
sustained bright major or dark minor chord (music), which may change to the other mood once. Every function takes a numpy Generator, so a seed fixes the
sound, and returns float32 mono samples in [-1, 1] plus what the picture must follow.
"""

import numpy as np

SAMPLE_RATE = 16000
SPEECH_PEAK, EFFECT_PEAK, MUSIC_PEAK = 0.5, 0.7, 0.2
CHORD_INTERVALS = {"major": (0, 4, 7), "minor": (0, 3, 7)}
# Bright major in a high register with rich overtones, dark minor low and mellow: the third alone is too
# subtle for a small audio encoder to hear (pooled features of the two moods overlapped), register is not.
CHORD_ROOTS = {"major": (60, 67), "minor": (43, 50)}  # MIDI note range of the root
CHORD_HARMONICS = {"major": (1, 2, 3, 4, 5), "minor": (1, 2)}
CROSSFADE_SECONDS = 0.05  # a change of mood crossfades the chords over this long, centred on the change (no click)
QUIET_START_MARGIN = 40  # a silent stretch starts at least this many frames before the clip ends


def _seconds(count: int, rate: int) -> np.ndarray:
    return np.arange(count) / rate


def speech(rng: np.random.Generator, frames: int, fps: float, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic syllables (random pitch, length and gaps). Returns samples and the per-frame envelope in [0, 1]."""
    total = int(round(frames / fps * rate))
    samples, envelope = np.zeros(total), np.zeros(total)
    start = rng.uniform(0.1, 0.3)
    while True:
        length = rng.uniform(0.12, 0.3)
        first, last = int(start * rate), int((start + length) * rate)
        if last >= total - int(0.1 * rate):
            break
        shape = np.sin(np.pi * np.linspace(0, 1, last - first)) ** 0.7
        envelope[first:last] = shape * rng.uniform(0.6, 1.0)
        samples[first:last] = _voiced(rng, last - first, rate)
        start += length + rng.uniform(0.06, 0.3)
    samples *= envelope
    return _normalised(samples, SPEECH_PEAK), frame_envelope(envelope, frames, fps, rate)


def with_pauses(rng: np.random.Generator, samples: np.ndarray, envelope: np.ndarray, fps: float, rate: int = SAMPLE_RATE,
                talk=(3.0, 8.0), pause=(1.5, 4.0)) -> tuple[np.ndarray, np.ndarray]:
    """Speech that stops: after `talk` seconds (drawn in the range) a pause of `pause` seconds, again and again.
    Each pause starts and ends on a frame already silent, so no syllable is cut; samples and the per-frame
    envelope go silent together."""
    samples, envelope = samples.copy(), envelope.copy()
    silent = np.flatnonzero(envelope == 0)
    frame = rng.uniform(*talk) * fps
    while (candidates := silent[silent >= frame]).size:
        start = int(candidates[0])
        later = silent[silent >= start + rng.uniform(*pause) * fps]
        stop = int(later[0]) if later.size else len(envelope)
        envelope[start:stop] = 0.0
        samples[int(round(start / fps * rate)):int(round(stop / fps * rate))] = 0.0
        frame = stop + rng.uniform(*talk) * fps
    return samples, envelope


def _voiced(rng: np.random.Generator, count: int, rate: int) -> np.ndarray:
    """A glottal-like tone: gliding pitch, ten harmonics weighted by a vowel-like formant."""
    pitch = rng.uniform(110, 220) * np.linspace(1.05, 0.95, count)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    formant = rng.uniform(500, 900)
    harmonics = range(1, 11)
    return sum(np.sin(k * phase) / k * np.exp(-((k * pitch.mean() - formant) / 600) ** 2) for k in harmonics)


def frame_envelope(envelope: np.ndarray, frames: int, fps: float, rate: int) -> np.ndarray:
    """Mean of a sample-rate envelope over each video frame, scaled to peak 1 (zeros stay zeros)."""
    edges = np.round(np.arange(frames + 1) / fps * rate).astype(int)
    per_frame = np.array([envelope[a:b].mean() if b > a else 0.0 for a, b in zip(edges, edges[1:])])
    peak = per_frame.max()
    return per_frame / peak if peak > 0 else per_frame


def effect_onsets(rng: np.random.Generator, frames: int, margin: int = 6, min_gap: int = 10, max_gap: int = 20) -> list[int]:
    """Frames at which a hit starts: at least `min_gap` frames apart, `margin` frames away from both ends."""
    onsets, frame = [], int(rng.integers(margin, margin + min_gap))
    while frame < frames - margin:
        onsets.append(frame)
        frame += int(rng.integers(min_gap, max_gap + 1))
    return onsets


def with_quiet_stretch(rng: np.random.Generator, onsets: list[int], frames: int, none_share: float = 0.25,
                       shortest: int = 30, longest: int = 60) -> list[int]:
    """The onsets less those in one silent stretch of `shortest` to `longest` - 1 frames, or (`none_share` of the
    time) none at all: clips where the object must stay still teach a model that no hit means no hop."""
    if rng.random() < none_share:
        return []
    start = int(rng.integers(0, frames - QUIET_START_MARGIN))
    length = int(rng.integers(shortest, longest))
    return [onset for onset in onsets if not start <= onset < start + length]


def effects(rng: np.random.Generator, onsets: list[int], frames: int, fps: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A percussive hit (noise burst plus a low thump, both decaying fast) in the middle of each onset frame."""
    total = int(round(frames / fps * rate))
    samples = np.zeros(total)
    hit_time = _seconds(int(0.25 * rate), rate)
    for onset in onsets:
        hit = rng.standard_normal(hit_time.size) * np.exp(-hit_time / 0.04)
        hit += 1.5 * np.sin(2 * np.pi * rng.uniform(70, 120) * hit_time) * np.exp(-hit_time / 0.08)
        first = int(round((onset + 0.5) / fps * rate))  # mid-frame: onset detectors fire slightly early
        length = min(hit.size, total - first)
        samples[first:first + length] += hit[:length]
    return _normalised(samples, EFFECT_PEAK)


def music(rng: np.random.Generator, mood: str, frames: int, fps: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sustained triad (bright major for the warm mood, dark minor for the cool one) with soft fades and
    no sharp onset."""
    total = int(round(frames / fps * rate))
    time = _seconds(total, rate)
    root = 440.0 * 2 ** ((rng.integers(*CHORD_ROOTS[mood]) - 69) / 12)
    notes = [root * 2 ** (step / 12) for step in CHORD_INTERVALS[mood]]
    chord = sum(np.sin(2 * np.pi * n * k * time) / k for n in notes for k in CHORD_HARMONICS[mood])
    fade = np.minimum(1.0, np.minimum(time, time[-1] - time) / 0.3)
    return _normalised(chord * fade, MUSIC_PEAK)


def changed_music(rng: np.random.Generator, first: np.ndarray, mood: str, frame: int, frames: int, fps: float,
                  rate: int = SAMPLE_RATE) -> np.ndarray:
    """The music `first` giving way at `frame` to a chord of `mood` (its root drawn from rng), crossfaded over
    CROSSFADE_SECONDS: the first chord before, only the second one after, each with its own fade at the clip's end."""
    second = music(rng, mood, frames, fps, rate)
    share = np.clip((_seconds(first.size, rate) - frame / fps) / CROSSFADE_SECONDS + 0.5, 0, 1)
    return (first * (1 - share) + second * share).astype(np.float32)


def _normalised(samples: np.ndarray, peak: float) -> np.ndarray:
    largest = np.abs(samples).max()
    return (samples * (peak / largest) if largest > 0 else samples).astype(np.float32)


def silence(frames: int, fps: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(int(round(frames / fps * rate)), np.float32)
