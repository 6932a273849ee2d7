"""Measures of a long clip against the world's truth: the audio-visual offset at its start and end, every per-clip
metric window by window, and whether mouths rest where nobody speaks. Frames are uint8 (N, H, W, 3); the truth is
the clip's `ClipSpec`, whose speech envelope and effect onsets come from its speech and effects stems.
"""

from dataclasses import replace

import numpy as np

from ..world.scene import ClipSpec, lifted, mood_spans
from .measures import crop, evaluate_clip, mouth_openings, object_region, pearson
from .temporal import time_windows

MAX_LAG = 12  # frames either way (half a second at 24 fps) the offset search looks
SPEECH_MARGIN_SECONDS = 0.25  # a mouth may still close this long after a syllable, or open this long before one
SPEAKING = 0.01  # per-frame speech envelope above which the frame has speech


# -- audio-visual offset ---------------------------------------------------------------------------
def object_displacement(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Per frame: mean absolute difference of the object's region from its look at rest (the median of the frames
    in which the truth has it on the floor, within the frame's stretch of one mood: one wall colour), in levels:
    large while the object is up."""
    region = crop(frames, object_region(spec)).astype(np.float32)
    resting = ~lifted(spec.effect_onsets, len(frames))
    displacement = np.zeros(len(frames), np.float32)
    for start, end, _ in mood_spans(spec):
        part, rest = region[start:end], resting[start:end]
        rest_look = np.median(part[rest] if rest.any() else part, axis=0)
        displacement[start:end] = np.abs(part - rest_look).mean(axis=(1, 2, 3))
    return displacement


def sound_and_picture(frames: np.ndarray, spec: ClipSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of (what the sound says, what the picture does), per frame: the speech envelope and the speaker's
    mouth opening; the object's lifted state and its measured displacement."""
    pairs = []
    if spec.persons and spec.speaker and any(spec.speech_envelope):
        opening = mouth_openings(frames, spec)[spec.speaker - 1]
        pairs.append((np.asarray(spec.speech_envelope, np.float64), opening))
    if spec.object and spec.effect_onsets:
        pairs.append((lifted(spec.effect_onsets, len(frames)).astype(np.float64), object_displacement(frames, spec)))
    return pairs


def lagged_correlation(sound: np.ndarray, picture: np.ndarray, start: int, end: int, lag: int) -> float:
    """Correlation of sound[t] with picture[t + lag] over the t in [start, end) for which both exist."""
    first, last = max(start, -lag), min(end, len(picture) - lag)
    if last - first < 3:
        return 0.0
    return pearson(sound[first:last], picture[first + lag:last + lag])


def peak_offset(curve: np.ndarray) -> float:
    """Index of the curve's maximum, refined by a parabola through it and its neighbours."""
    peak = int(np.argmax(curve))
    if 0 < peak < len(curve) - 1:
        before, top, after = curve[peak - 1], curve[peak], curve[peak + 1]
        bend = before - 2 * top + after
        if bend < 0:
            return peak + 0.5 * (before - after) / bend
    return float(peak)


def av_offset(frames: np.ndarray, spec: ClipSpec, where: str = "start", seconds: float = 10.0,
              max_lag: int = MAX_LAG) -> dict | None:
    """The lag in frames (positive: the picture comes late) that best lines up what the sound says with what
    the picture does in the first (`where="start"`) or last (`"end"`) `seconds` of the clip, and the mean
    correlation at that lag. None when nothing in the clip should move with the sound."""
    if where not in ("start", "end"):
        raise ValueError(f"where must be 'start' or 'end', not {where!r}")
    span = min(len(frames), int(round(seconds * spec.fps)))
    start, end = (0, span) if where == "start" else (len(frames) - span, len(frames))
    pairs = sound_and_picture(frames, spec)
    if not pairs:
        return None
    lags = np.arange(-max_lag, max_lag + 1)
    curves = [np.array([lagged_correlation(sound, picture, start, end, lag) for lag in lags]) for sound, picture in pairs]
    curves = [curve for curve in curves if curve.any()]  # a pair silent in this stretch says nothing
    if not curves:
        return None
    curve = np.mean(curves, axis=0)
    return {"lag_frames": float(lags[0] + peak_offset(curve)), "correlation": float(curve.max())}


# -- mouths at rest --------------------------------------------------------------------------------
def speech_activity(spec: ClipSpec, margin_seconds: float = SPEECH_MARGIN_SECONDS) -> np.ndarray:
    """Per frame: True where someone speaks, or a syllable is at most `margin_seconds` away."""
    speaking = np.asarray(spec.speech_envelope, np.float64) > SPEAKING if spec.speech_envelope else np.zeros(spec.frames, bool)
    margin = int(round(margin_seconds * spec.fps))
    if margin == 0 or not speaking.any():
        return speaking
    return np.convolve(speaking.astype(float), np.ones(2 * margin + 1), mode="same") > 0


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def resting_mouth_ratio(frames: np.ndarray, spec: ClipSpec, activity: np.ndarray | None = None) -> dict | None:
    """How much mouths move where nobody speaks, against how much the speaker's mouth moves in speech.

    Motion is the frame-to-frame change of the measured mouth opening (pixels per frame); a change is at rest
    (or in speech) when both its frames are. `resting_mouth_ratio`: every mouth's motion at rest over the
    speaker's in speech; `bystander_ratio` (two-person clips): the silent person's motion while the other speaks
    over the speaker's. A ratio is None where its frames are missing or the speaker's mouth never moves. None for
    a clip without persons or speech."""
    if not spec.persons or not spec.speaker or not any(spec.speech_envelope):
        return None
    activity = speech_activity(spec) if activity is None else np.asarray(activity, bool)
    motion = np.abs(np.diff(mouth_openings(frames, spec), axis=1))
    in_speech, at_rest = activity[1:] & activity[:-1], ~activity[1:] & ~activity[:-1]
    speaker = spec.speaker - 1
    speech_motion = _mean_or_none(motion[speaker][in_speech])
    rest_motion = _mean_or_none(motion[:, at_rest])
    others = [index for index in range(len(spec.persons)) if index != speaker]
    bystander_motion = _mean_or_none(motion[others][:, in_speech]) if others else None

    def over_speech(value):
        return value / speech_motion if value is not None and speech_motion and speech_motion > 1e-6 else None

    return {"resting_mouth_ratio": over_speech(rest_motion), "bystander_ratio": over_speech(bystander_motion),
            "rest_motion": rest_motion, "speech_motion": speech_motion, "bystander_motion": bystander_motion,
            "rest_seconds": float(at_rest.sum() / spec.fps), "speech_seconds": float(in_speech.sum() / spec.fps)}


# -- every per-clip metric, window by window -------------------------------------------------------
def sliced_moods(spec: ClipSpec, start: int, end: int) -> dict:
    """The mood fields of frames [start, end): a change of mood at or before `start` makes the new mood the window's
    only one, a change at or after `end` is not in it, one inside it moves with the window's start."""
    if not spec.mood_change:
        return {}
    cut, second = spec.mood_change["frame"], spec.mood_change["mood"]
    if cut <= start:
        return {"mood": second, "mood_change": None}
    return {"mood_change": None if cut >= end else {"frame": cut - start, "mood": second}}


def slice_spec(spec: ClipSpec, start: int, end: int) -> ClipSpec:
    """The truth of frames [start, end) of a clip, as if they were a clip of their own."""
    return replace(spec, frames=end - start, speech_envelope=list(spec.speech_envelope[start:end]),
                   effect_onsets=[onset - start for onset in spec.effect_onsets if start <= onset < end],
                   **sliced_moods(spec, start, end))


def window_bounds(spec: ClipSpec, window_seconds: float) -> list[tuple[int, int]]:
    """Windows of about `window_seconds`, each join moved later until no hop of the object crosses or starts at
    it (a hop cut in two would lose its start and count its landing as an event without a sound)."""
    up = lifted(spec.effect_onsets, spec.frames)
    last_join = spec.frames - int(round(window_seconds * spec.fps / 2))  # no window shorter than half of one
    joins = []
    for _, end in time_windows(spec.frames, spec.fps, window_seconds)[:-1]:
        while end < spec.frames and (up[end - 1] or up[end]):  # the object rests on both sides of a join
            end += 1
        if end <= last_join and (not joins or end > joins[-1]):
            joins.append(end)
    edges = [0, *joins, spec.frames]
    return list(zip(edges, edges[1:]))


def evaluate_window(frames: np.ndarray, audio: np.ndarray, sample_rate: int, spec: ClipSpec, start: int, end: int) -> dict:
    """evaluate_clip on frames [start, end) and the audio under them."""
    first, last = (int(round(frame / spec.fps * sample_rate)) for frame in (start, end))
    return evaluate_clip(frames[start:end], audio[first:last], sample_rate, slice_spec(spec, start, end))


def per_window(frames: np.ndarray, audio: np.ndarray, sample_rate: int, spec: ClipSpec, window_seconds: float = 4.0) -> list[dict]:
    """Rows of {"start", "end" (seconds), "metrics" (evaluate_clip's, on that window)}, in time order."""
    rows = []
    for start, end in window_bounds(spec, window_seconds):
        metrics = evaluate_window(frames, audio, sample_rate, spec, start, end)["metrics"]
        rows.append({"start": start / spec.fps, "end": end / spec.fps, "metrics": metrics})
    return rows
