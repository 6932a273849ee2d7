"""The long-form part of `python -m mtv_lab evaluate --long-form`: per clip every metric window by window, flicker
against the truth video, the wall's colour drift, the audio-visual offset at the start and the end, mouths at rest;
per variant a table of their means and a table per window."""

import numpy as np

from ..world.scene import ClipSpec
from .longform import av_offset, per_window, resting_mouth_ratio
from .measures import METRICS
from .report import format_table
from .temporal import colour_drift, flicker_against, time_windows

# Columns of the summary, each a mean over the clips it applies to. Ratios are the generated video over the truth.
SUMMARY = {
    "within_ratio": "frame change inside latent frames, over the truth's",
    "boundary_ratio": "frame change at latent-frame boundaries, over the truth's",
    "seam_ratio": "frame change at segment seams, over the truth's",
    "boundary_pulse": "change at latent-frame boundaries over change inside them",
    "seam_pulse": "change at segment seams over change inside latent frames",
    "wall_drift": "largest change of the wall's mean colour from the first window beyond the truth's own, levels",
    "wall_vs_truth": "largest difference of the wall's mean colour from the truth's same window, levels",
    "offset_start": "audio-visual lag over the first seconds, frames (positive: picture late)",
    "offset_end": "audio-visual lag over the last seconds, frames",
    "resting_mouth": "mouth motion where nobody speaks over the speaker's motion in speech",
    "bystander": "the silent person's mouth motion while the other speaks over the speaker's",
}


def evaluate_long_form(frames: np.ndarray, truth: np.ndarray, audio: np.ndarray, spec: ClipSpec,
                       window_seconds: float = 4.0, offset_seconds: float = 10.0) -> dict:
    """Everything long-form for one clip: `frames` generated, `truth` the world's own video of the clip."""
    windows = time_windows(spec.frames, spec.fps, window_seconds)
    offsets = {where: av_offset(frames, spec, where, offset_seconds) for where in ("start", "end")}
    return {"windows": per_window(frames, audio, spec.sample_rate, spec, window_seconds),
            "flicker": flicker_against(frames, truth),
            "wall": colour_drift(frames, windows, spec.background_boxes, truth),
            "offset": offsets, "mouths": resting_mouth_ratio(frames, spec)}


def clip_summary(result: dict) -> dict:
    """The SUMMARY columns of one clip (None where one does not apply)."""
    ratio, generated = result["flicker"]["ratio"], result["flicker"]["generated"]
    mouths, offsets = result["mouths"] or {}, result["offset"]
    return {
        "within_ratio": ratio["within"], "boundary_ratio": ratio["boundary"], "seam_ratio": ratio["seam"],
        "boundary_pulse": generated["boundary_pulse"], "seam_pulse": generated["seam_pulse"],
        "wall_drift": result["wall"]["largest"], "wall_vs_truth": result["wall"]["largest_against_truth"],
        "offset_start": (offsets["start"] or {}).get("lag_frames"), "offset_end": (offsets["end"] or {}).get("lag_frames"),
        "resting_mouth": mouths.get("resting_mouth_ratio"), "bystander": mouths.get("bystander_ratio"),
    }


def _mean(values) -> float | None:
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def summarise_long_form(results: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """variant -> {SUMMARY column: mean over the clips it applies to, "clips": count}."""
    rows = {}
    for variant, clips in results.items():
        summaries = [clip_summary(result) for result in clips.values()]
        rows[variant] = {**{column: _mean(row[column] for row in summaries) for column in SUMMARY}, "clips": len(summaries)}
    return rows


def window_rows(clips: dict[str, dict]) -> list[dict]:
    """Per window index: mean start and end (seconds) and each metric's mean over the clips that have it."""
    count = max((len(result["windows"]) for result in clips.values()), default=0)
    rows = []
    for index in range(count):
        windows = [result["windows"][index] for result in clips.values() if index < len(result["windows"])]
        metrics = {metric: _mean(window["metrics"][metric] for window in windows) for metric in METRICS}
        rows.append({"start": _mean(w["start"] for w in windows), "end": _mean(w["end"] for w in windows),
                     "metrics": metrics, "clips": len(windows)})
    return rows


def long_form_report(results: dict[str, dict[str, dict]]) -> dict:
    """What report.json gets under "long_form": the summary table, the per-window table, every clip's details."""
    return {"table": summarise_long_form(results), "columns": SUMMARY,
            "windows": {variant: window_rows(clips) for variant, clips in results.items()}, "clips": results}


def format_long_form(results: dict[str, dict[str, dict]]) -> str:
    """Per variant a table of the metrics per window, then the summary table."""
    blocks = []
    for variant, clips in results.items():
        rows = {f"{row['start']:5.1f}-{row['end']:5.1f} s": {**row["metrics"], "clips": row["clips"]} for row in window_rows(clips)}
        blocks.append(f"long form, {variant}, per window (mean over clips):\n" + format_table(rows, label="window"))
    summary = format_table(summarise_long_form(results), columns=(*SUMMARY, "clips"))
    return "\n\n".join([*blocks, "long form summary (mean over clips):\n" + summary])
