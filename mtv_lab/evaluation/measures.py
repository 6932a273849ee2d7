"""Measures the synthetic world makes exact, read from decoded uint8 frames (N, H, W, 3) and a clip's
ground truth (`ClipSpec`, or its JSON dict). Each looks only inside regions the truth names and uses
relative changes, so a soft, noisy generated video is measured as fairly as the rendered one.
"""

import cv2
import numpy as np

from mtv_core.errors import AudioInputError, ConfigError

from ..world.generate import spec_from_dict
from ..world.scene import (
    BACKGROUNDS,
    HOP_FRAMES,
    MOUTH,
    OBJECT_COLOURS,
    OBJECT_SHAPES,
    SKIN,
    ClipSpec,
    lifted,
    mood_spans,
    shape_mask,
    small_person,
)
from .av_align import av_align, onset_strength

EFFECT_TOLERANCE = 4  # frames: one latent interval
LANDING_TOLERANCE = 2  # frames around HOP_FRAMES after a hop's start in which its landing is expected
EVENT_MIN_CHANGE, EVENT_RELATIVE = 4.0, 0.3  # an event changes the object region by >= 4 levels and >= 30 % of the largest change
SKIN_DISTANCE = 60.0
METRICS = ("av_align", "region_sync", "mouth_sync", "effect_f1", "effect_precision", "effect_recall", "mood_accuracy",
           "attribute_accuracy", "consistency")


def luma(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def crop(frames: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    height, width = frames.shape[-3:-1]
    return frames[..., max(0, y0):min(height, y1), max(0, x0):min(width, x1), :]


def pearson(first, second) -> float:
    """Correlation; 0 when either side does not vary (a still mouth says nothing about the speech)."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    if first.std() < 1e-6 or second.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(first, second)[0, 1])


# -- speech -> mouth -------------------------------------------------------------------------------
def mouth_openings(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """(persons, frames): the mouth's height in pixels, estimated from how dark its box is."""
    skin, mouth = luma(np.array(SKIN)), luma(np.array(MOUTH))
    openings = []
    for person in spec.persons:
        box = crop(frames, person.mouth_box)
        dark_area = (skin - luma(box).mean(axis=(1, 2))) / (skin - mouth) * box.shape[1] * box.shape[2]
        mouth_width = 2 * person.mouth_half_size[0]
        openings.append(dark_area / (np.pi / 4 * mouth_width))  # an ellipse's area is pi/4 * width * height
    return np.array(openings).reshape(len(spec.persons), len(frames))


def mouth_sync(frames: np.ndarray, spec: ClipSpec, openings: np.ndarray) -> float | None:
    """Correlation of the speaking person's measured mouth opening with the speech envelope."""
    if not spec.persons or not any(spec.speech_envelope):
        return None
    return pearson(openings[spec.speaker - 1], spec.speech_envelope)


def measured_speaker(openings: np.ndarray) -> int:
    return int(np.argmax(openings.std(axis=1))) + 1


# -- effects -> object hops ----------------------------------------------------------------------
def object_region(spec: ClipSpec) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = spec.object.box
    return x0 - 1, y0 - spec.object.jump - 1, x1 + 1, y1 + 1


def object_change(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Mean absolute change of the object region from the previous frame (0 for the first frame)."""
    region = crop(frames, object_region(spec)).astype(np.float32)
    change = np.abs(np.diff(region, axis=0)).mean(axis=(1, 2, 3))
    return np.concatenate([[0.0], change])


def visual_events(change: np.ndarray) -> list[int]:
    """Frames where the change peaks above both an absolute and a relative threshold."""
    threshold = max(EVENT_MIN_CHANGE, EVENT_RELATIVE * change.max(initial=0.0))
    padded = np.concatenate([[0.0], change, [0.0]])
    return [i for i in range(len(change)) if change[i] >= threshold and padded[i] <= change[i] > padded[i + 2]]


def hop_starts(events: list[int]) -> list[int]:
    """A hop changes the object region twice, leaving the floor and landing HOP_FRAMES later: keep the first of each
    such pair, so a clean hop is one event and the landing is not counted as an event away from every sound."""
    starts = []
    for event in sorted(events):
        if not starts or abs(event - starts[-1] - HOP_FRAMES) > LANDING_TOLERANCE:
            starts.append(event)
    return starts


def matched_onsets(onsets: list[int], events: list[int]) -> int:
    """Onsets paired one to one with a visual event at most one latent interval away (each onset takes the
    nearest event still free), so one event cannot answer two onsets."""
    free, matches = sorted(events), 0
    for onset in sorted(onsets):
        near = [event for event in free if abs(event - onset) <= EFFECT_TOLERANCE]
        if near:
            free.remove(min(near, key=lambda event: abs(event - onset)))
            matches += 1
    return matches


def effect_scores(onsets: list[int], events: list[int]) -> dict[str, float | None]:
    """Recall (onsets answered by an event), precision (events that answer an onset: a hop or flicker away from
    every sound counts against) and their F1; None when the clip has no effect sounds."""
    if not onsets:
        return {"effect_f1": None, "effect_precision": None, "effect_recall": None}
    events = hop_starts(events)
    matches = matched_onsets(onsets, events)
    recall, precision = matches / len(onsets), (matches / len(events) if events else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if matches else 0.0
    return {"effect_f1": f1, "effect_precision": precision, "effect_recall": recall}


# -- sound onsets -> motion where the truth says things move ---------------------------------------
def region_motion(frames: np.ndarray, spec: ClipSpec) -> np.ndarray | None:
    """Mean absolute change from the previous frame inside the regions that should answer the sound (every mouth,
    the object's path); None for a clip with none."""
    boxes = [person.mouth_box for person in spec.persons] + ([object_region(spec)] if spec.object else [])
    if not boxes:
        return None
    pixels = np.concatenate([crop(frames, box).reshape(len(frames), -1) for box in boxes], axis=1).astype(np.float32)
    return np.concatenate([[0.0], np.abs(np.diff(pixels, axis=0)).mean(axis=1)])


def sound_change_per_frame(audio: np.ndarray, sample_rate: int, frames: int, fps: float) -> np.ndarray:
    """The largest change of the sound (starting or fading) within each video frame."""
    strength, hop_seconds = onset_strength(audio, sample_rate, both_ways=True)
    frame_of_hop = np.minimum((np.arange(strength.size) * hop_seconds * fps).astype(int), frames - 1)
    per_frame = np.zeros(frames)
    np.maximum.at(per_frame, frame_of_hop, strength)
    return per_frame


def region_sync(frames: np.ndarray, audio: np.ndarray, sample_rate: int, spec: ClipSpec) -> float | None:
    """Correlation of how much the mix's sound changes with how much the truth's regions (mouths, object) move,
    both smoothed over three frames so a one-frame offset is not punished. Unlike AV-Align it ignores motion where
    nothing should answer the sound, and it scores how much, not only whether, the picture moves with it. The
    frames next to a change of mood (the wall's cut, the chord's change) are left out."""
    motion = region_motion(frames, spec)
    if motion is None:
        return None
    window = np.ones(3) / 3
    sound = np.convolve(sound_change_per_frame(audio, sample_rate, len(frames), spec.fps), window, mode="same")
    keep = np.ones(len(frames), bool)
    for cut in wall_cuts(spec):
        keep[max(0, cut - 2):cut + 3] = False
    return pearson(np.convolve(motion, window, mode="same")[keep], sound[keep])


# -- music -> mood ---------------------------------------------------------------------------------
def background_warmth(frames: np.ndarray, spec: ClipSpec) -> float:
    """Mean red minus blue in the background corners: > 0 warm (major), < 0 cool (minor)."""
    pixels = np.concatenate([crop(frames, box).reshape(-1, 3) for box in spec.background_boxes]).astype(np.float32)
    return float(pixels[:, 0].mean() - pixels[:, 2].mean())


def measured_mood(frames: np.ndarray, spec: ClipSpec) -> str:
    return "major" if background_warmth(frames, spec) > 0 else "minor"


def mood_accuracy(frames: np.ndarray, spec: ClipSpec) -> float | None:
    """Share of the frames under music whose stretch of one mood shows that mood: each stretch (the whole clip, or
    the parts before and after a change of mood) is judged on its own frames. None for a clip without music."""
    spans = [(start, end, mood) for start, end, mood in mood_spans(spec) if mood and end > start]
    if not spans:
        return None
    right = sum((end - start) * (measured_mood(frames[start:end], spec) == mood) for start, end, mood in spans)
    return float(right / sum(end - start for start, end, _ in spans))


def wall_cuts(spec: ClipSpec) -> list[int]:
    """Frames at which the wall changes colour with the music's mood (where every region's change shows it)."""
    return [start for start, _, _ in mood_spans(spec)[1:]]


# -- text -> attributes ----------------------------------------------------------------------------
def person_count(still: np.ndarray, spec: ClipSpec) -> int:
    """Skin-coloured blobs at least 40 % of a small head in area."""
    skin = np.linalg.norm(still.astype(np.float32) - np.array(SKIN, np.float32), axis=-1) < SKIN_DISTANCE
    _, _, stats, _ = cv2.connectedComponentsWithStats(skin.astype(np.uint8), connectivity=4)
    head = small_person(spec.height, 0, "black", "red", False).radii[0]
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int(np.sum(areas >= 0.4 * np.pi * head ** 2))


def object_colour(still: np.ndarray, spec: ClipSpec) -> str:
    """The palette colour nearest to the median of the object's central patch."""
    x0, y0, x1, y1 = spec.object.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.12 * (x1 - x0)
    colour = np.median(crop(still, (cx - half, cy - half, cx + half, cy + half)).reshape(-1, 3), axis=0)
    return min(OBJECT_COLOURS, key=lambda name: np.linalg.norm(colour - np.array(OBJECT_COLOURS[name])))


def object_shape(still: np.ndarray, spec: ClipSpec, colour: str, mood: str | None = None) -> str:
    """The candidate shape whose mask best overlaps (IoU) the pixels nearer the object's colour than the background's
    (the wall of `mood`, by default the clip's)."""
    pixels = still.astype(np.float32)
    near_object = np.linalg.norm(pixels - np.array(OBJECT_COLOURS[colour]), axis=-1)
    near_background = np.linalg.norm(pixels - np.array(BACKGROUNDS[(mood or spec.mood) or "neutral"]), axis=-1)
    x0, y0, x1, y1 = spec.object.box
    inside = np.zeros(near_object.shape, bool)
    inside[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = True
    measured = (near_object < near_background) & inside

    def overlap(shape: str) -> float:
        candidate = shape_mask(shape, spec.object.box, spec.height, spec.width)
        return (measured & candidate).sum() / max(1, (measured | candidate).sum())

    return max(OBJECT_SHAPES, key=overlap)


def attributes(frames: np.ndarray, spec: ClipSpec, openings: np.ndarray) -> dict[str, tuple]:
    """name -> (measured, true) for what the caption controls, read from the median of the frames in
    which the object (if any) should be at rest, within the longest stretch of one mood (one wall colour)."""
    start, end, mood = max(mood_spans(spec), key=lambda span: span[1] - span[0])
    resting = ~lifted(spec.effect_onsets, len(frames))
    resting[:start], resting[end:] = False, False
    still = np.median(frames[resting] if resting.any() else frames[start:end], axis=0).astype(np.uint8)
    checks = {"persons": (person_count(still, spec), len(spec.persons))}
    if len(spec.persons) == 2 and any(spec.speech_envelope):  # who speaks shows only while someone does
        checks["speaker"] = (measured_speaker(openings), spec.speaker)
    if spec.object:
        colour = object_colour(still, spec)
        checks["object_colour"] = (colour, spec.object.colour)
        checks["object_shape"] = (object_shape(still, spec, colour, mood), spec.object.shape)
    return checks


# -- whole clip ------------------------------------------------------------------------------------
def consistency(frames: np.ndarray) -> float:
    """Mean similarity of consecutive frames: 1 - mean absolute difference / 255."""
    if len(frames) < 2:
        return 1.0
    return float(1 - np.abs(np.diff(frames.astype(np.float32), axis=0)).mean() / 255)


def check_inputs(frames: np.ndarray, audio: np.ndarray, sample_rate: int, spec: ClipSpec) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ConfigError(f"clip {spec.name}: frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}; decode the video as RGB")
    if len(frames) != spec.frames:
        raise ConfigError(f"clip {spec.name}: the video has {len(frames)} frames but its audio and truth have {spec.frames} "
                          f"({spec.frames / spec.fps:.3f} s at {spec.fps:g} fps); generate exactly {spec.frames} frames for this clip")
    if frames.shape[1:3] != (spec.height, spec.width):
        raise ConfigError(f"clip {spec.name}: frames are {frames.shape[1]}x{frames.shape[2]}, the world is "
                          f"{spec.height}x{spec.width} (height x width); resize the frames first")
    video_seconds, audio_seconds = spec.frames / spec.fps, len(audio) / sample_rate
    if abs(video_seconds - audio_seconds) > 1 / spec.fps:
        raise AudioInputError(f"clip {spec.name}: the audio lasts {audio_seconds:.3f} s but the video {video_seconds:.3f} s "
                              f"({spec.frames} frames at {spec.fps:g} fps); pass the clip's own audio")


def evaluate_clip(frames: np.ndarray, audio: np.ndarray, sample_rate: int, truth) -> dict:
    """Every metric of one clip, and the signals behind them (for plots).

    frames: decoded uint8 (N, H, W, 3); audio: the clip's mono mix; truth: ClipSpec or its JSON dict.
    A metric that does not apply to the clip's kind is None.
    """
    spec = truth if isinstance(truth, ClipSpec) else spec_from_dict(truth)
    check_inputs(frames, audio, sample_rate, spec)
    openings = mouth_openings(frames, spec)
    change = object_change(frames, spec) if spec.object else np.zeros(len(frames))
    change[wall_cuts(spec)] = 0.0  # the wall's cut to another mood is no hop
    events = visual_events(change) if spec.object else []
    checks = attributes(frames, spec, openings)
    sync = av_align(frames, audio, sample_rate, spec.fps)
    metrics = {
        "av_align": sync["score"],
        "region_sync": region_sync(frames, audio, sample_rate, spec),
        "mouth_sync": mouth_sync(frames, spec, openings),
        **effect_scores(spec.effect_onsets, events),
        "mood_accuracy": mood_accuracy(frames, spec),
        "attribute_accuracy": float(np.mean([measured == true for measured, true in checks.values()])),
        "consistency": consistency(frames),
    }
    signals = {"mouth_openings": openings, "object_change": change, "visual_events": events, "attributes": checks,
               "audio_peaks": sync["audio_peaks"], "video_peaks": sync["video_peaks"], "flow": sync["flow"],
               "warmth": background_warmth(frames, spec)}
    return {"metrics": metrics, "signals": signals}
