"""Picture-only measures of a long video over time: how much each frame changes, split by where MTV's frames come
from (inside one latent frame, across a latent-frame boundary, across a segment seam), and how its colour drifts.
Frames are uint8 (N, H, W, 3); every change and colour is in levels of 255.

Where the joins fall follows `mtv_core.pipeline.segments`: segment k generates output frames from 44k on and keeps
them from its `keep_from` (5 for k > 0) on; inside a segment, frame 0 is a latent of its own and frames
4j+1 .. 4j+4 share latent j+1. Change i is the change from frame i to frame i + 1 and takes the kind of frame i + 1:
a boundary when frame i + 1 opens a latent, a seam when it is the first frame a later segment keeps.
"""

from collections.abc import Iterable

import numpy as np

from mtv_core.pipeline.segments import SegmentPlan, plan_segments
from mtv_core.spec import TEMPORAL_COMPRESSION

from .measures import crop

WITHIN, BOUNDARY, SEAM = "within", "boundary", "seam"
CHUNK_FRAMES = 256  # frames converted to float at a time, so a three-minute video is never held as float


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(N - 1,): mean absolute change from frame i to frame i + 1, over every pixel and channel."""
    changes = []
    for start in range(0, max(0, len(frames) - 1), CHUNK_FRAMES):
        block = frames[start:start + CHUNK_FRAMES + 1].astype(np.float32)
        changes.append(np.abs(np.diff(block, axis=0)).mean(axis=(1, 2, 3)))
    return np.concatenate(changes) if changes else np.zeros(0)


def opens_latent(local_frame: int) -> bool:
    return local_frame >= 1 and (local_frame - 1) % TEMPORAL_COMPRESSION == 0


def kinds_from_plan(plan: SegmentPlan, frame_count: int) -> np.ndarray:
    """The kind (WITHIN, BOUNDARY or SEAM) of each of the frame_count - 1 changes."""
    kinds = np.full(max(0, frame_count - 1), WITHIN, dtype=object)
    segments = plan.segments
    for index, segment in enumerate(segments):
        first_kept = segment.start_frame + segment.keep_from
        end = segments[index + 1].start_frame + segments[index + 1].keep_from if index + 1 < len(segments) else frame_count
        for frame in range(max(1, first_kept), min(end, frame_count)):
            if segment.has_prefix and frame == first_kept:
                kinds[frame - 1] = SEAM
            elif opens_latent(frame - segment.start_frame):
                kinds[frame - 1] = BOUNDARY
    return kinds


def kinds_from_seams(seams: Iterable[int], frame_count: int) -> np.ndarray:
    """Latent boundaries every TEMPORAL_COMPRESSION frames from frame 1 on, and a seam at each given frame."""
    kinds = np.array([BOUNDARY if opens_latent(frame) else WITHIN for frame in range(1, frame_count)], dtype=object)
    for seam in seams:
        if 1 <= seam < frame_count:
            kinds[seam - 1] = SEAM
    return kinds


def change_kinds(frame_count: int, plan_or_seams=None) -> np.ndarray:
    """Kinds of the changes of a video of frame_count frames made as `plan_or_seams` says: a SegmentPlan, the
    frame indices where segments join, or None for the plan MTV makes for that many frames."""
    if plan_or_seams is None:
        plan_or_seams = plan_segments(frame_count)
    if isinstance(plan_or_seams, SegmentPlan):
        return kinds_from_plan(plan_or_seams, frame_count)
    return kinds_from_seams(plan_or_seams, frame_count)


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or denominator is None or denominator <= 1e-9:
        return None
    return numerator / denominator


def flicker(frames: np.ndarray, plan_or_seams=None) -> dict:
    """Mean frame change inside latent frames, at latent boundaries and at segment seams (levels; None where the
    video has no change of that kind), and the pulses: boundary (and seam) change over the change inside latents."""
    changes = frame_changes(frames)
    kinds = change_kinds(len(frames), plan_or_seams)
    result = {kind: _mean_or_none(changes[kinds == kind]) for kind in (WITHIN, BOUNDARY, SEAM)}
    result["boundary_pulse"] = _ratio(result[BOUNDARY], result[WITHIN])
    result["seam_pulse"] = _ratio(result[SEAM], result[WITHIN])
    return result


def flicker_against(generated: np.ndarray, truth: np.ndarray, plan_or_seams=None) -> dict:
    """flicker() of both videos and, per entry, generated over truth (None where the truth has no change of that
    kind: a still truth makes any ratio meaningless, the absolute values still say how much the video flickers)."""
    mine, theirs = flicker(generated, plan_or_seams), flicker(truth, plan_or_seams)
    return {"generated": mine, "truth": theirs, "ratio": {key: _ratio(mine[key], theirs[key]) for key in mine}}


# -- colour over time ------------------------------------------------------------------------------
def time_windows(frame_count: int, fps: float, seconds: float) -> list[tuple[int, int]]:
    """Consecutive (start, end) frame ranges of `seconds` each; a last piece shorter than half a window joins the
    one before it."""
    length = max(1, int(round(seconds * fps)))
    starts = list(range(0, frame_count, length))
    if len(starts) > 1 and frame_count - starts[-1] < length / 2:
        starts.pop()
    ends = starts[1:] + [frame_count]
    return list(zip(starts, ends))


def region_pixels(frames: np.ndarray, region) -> np.ndarray:
    """(N, P, 3) pixels of a box (x0, y0, x1, y1), of a list of boxes, or of the whole frame (region None)."""
    if region is None:
        return frames.reshape(len(frames), -1, 3)
    boxes = [region] if np.ndim(region) == 1 else list(region)
    return np.concatenate([crop(frames, box).reshape(len(frames), -1, 3) for box in boxes], axis=1)


def window_colours(frames: np.ndarray, windows, region=None) -> np.ndarray:
    """(windows, 3): the mean RGB of the region over each window's frames."""
    return np.array([region_pixels(frames[start:end], region).astype(np.float64).mean(axis=(0, 1)) for start, end in windows])


def colour_drift(frames: np.ndarray, windows, region=None, truth: np.ndarray | None = None) -> dict:
    """Per window the region's mean RGB, its drift from the first window and (given the truth video) its difference
    from the truth's same window, all in levels; `largest` and `largest_against_truth`: the largest absolute channel
    value of those over the windows. With the truth, drift is the change beyond the truth's own change from its first
    window, so a wall that follows a mood change in the music does not count as drifting."""
    colours = window_colours(frames, windows, region)
    truth_colours = window_colours(truth, windows, region) if truth is not None else None
    drift = colours - colours[0]
    if truth_colours is not None:
        drift = drift - (truth_colours - truth_colours[0])
    rows = [{"start_frame": start, "end_frame": end, "rgb": colour.tolist(), "drift": change.tolist()}
            for (start, end), colour, change in zip(windows, colours, drift)]
    result = {"windows": rows, "largest": float(np.abs(drift).max()), "largest_against_truth": None}
    if truth_colours is not None:
        against = colours - truth_colours
        for row, difference in zip(rows, against):
            row["against_truth"] = difference.tolist()
        result["largest_against_truth"] = float(np.abs(against).max())
    return result
