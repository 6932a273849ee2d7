"""The evaluation report: one row per model or variant, one column per metric (mean over the clips the
metric applies to), printed as a table, written as JSON, and a PNG per clip of sound against picture."""

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from ..world.scene import ClipSpec
from .av_align import onset_strength
from .measures import METRICS

REPORT = "report.json"


def summarise(results: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """variant -> {metric: mean over applicable clips (None if none), "clips": count}."""
    rows = {}
    for variant, clips in results.items():
        row = {}
        for metric in METRICS:
            values = [clip["metrics"][metric] for clip in clips.values() if clip["metrics"][metric] is not None]
            row[metric] = float(np.mean(values)) if values else None
        rows[variant] = {**row, "clips": len(clips)}
    return rows


def format_table(rows: dict[str, dict], columns=(*METRICS, "clips"), label: str = "variant") -> str:
    width = max(len(label), *(len(name) for name in rows))
    lines = ["  ".join([label.ljust(width), *(column.rjust(len(column)) for column in columns)])]
    for name, row in rows.items():
        cells = [_cell(row[column], len(column)) for column in columns]
        lines.append("  ".join([name.ljust(width), *cells]))
    return "\n".join(lines)


def _cell(value, width: int) -> str:
    if value is None:
        return "-".rjust(width)
    return str(value).rjust(width) if isinstance(value, int) else f"{value:.3f}".rjust(width)


def write_report(out: Path, results: dict[str, dict[str, dict]], rows: dict[str, dict], extra: dict | None = None) -> Path:
    """report.json: the table, each clip's metrics and attributes, and any `extra` top-level entries."""
    per_clip = {variant: {name: {"metrics": clip["metrics"],
                                 "attributes": {key: list(pair) for key, pair in clip["signals"]["attributes"].items()}}
                          for name, clip in clips.items()}
                for variant, clips in results.items()}
    path = Path(out) / REPORT
    path.write_text(json.dumps({"table": rows, "clips": per_clip, **(extra or {})}, indent=1, default=_plain))
    return path


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def plot_clip(path: Path, spec: ClipSpec, audio: np.ndarray, sample_rate: int, evaluation: dict, title: str) -> None:
    """Top: audio onset strength and peaks, speech envelope, effect onsets. Bottom: what the picture did."""
    matplotlib.use("Agg")

    signals, frame_times = evaluation["signals"], np.arange(spec.frames) / spec.fps
    strength, hop_seconds = onset_strength(audio, sample_rate)
    figure, (sound, picture) = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
    sound.plot(np.arange(strength.size) * hop_seconds, _unit(strength), color="grey", lw=0.8, label="onset strength")
    sound.vlines(signals["audio_peaks"], 0, 1, color="black", lw=0.6, label="audio peaks")
    if any(spec.speech_envelope):
        sound.plot(frame_times, spec.speech_envelope, color="tab:blue", label="speech envelope")
    if spec.effect_onsets:
        sound.vlines(np.array(spec.effect_onsets) / spec.fps, 0, 1, color="tab:red", lw=1.5, label="effect onsets")
    picture.plot(frame_times, _unit(signals["flow"]), color="grey", lw=0.8, label="optical flow")
    picture.vlines(signals["video_peaks"], 0, 1, color="black", lw=0.6, label="video peaks")
    for number, opening in enumerate(signals["mouth_openings"], 1):
        picture.plot(frame_times, _unit(opening), label=f"mouth {number} (measured)")
    if spec.object:
        picture.plot(frame_times, _unit(signals["object_change"]), color="tab:red", label="object change (measured)")
    sound.set_title(f"{title}: {spec.name}  " + _metric_text(evaluation["metrics"]), fontsize=8)
    picture.set_xlabel("seconds")
    for axes in (sound, picture):
        axes.legend(fontsize=6, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _unit(values) -> np.ndarray:
    values = np.asarray(values, np.float64)
    span = np.ptp(values) if values.size else 0
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _metric_text(metrics: dict) -> str:
    return " ".join(f"{name}={value:.2f}" for name, value in metrics.items() if value is not None)
