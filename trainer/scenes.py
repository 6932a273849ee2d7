"""Hard-cut detection by colour-histogram difference (the idea of PySceneDetect's HistogramDetector).

Each frame (subsampled to about 64 px wide) gets a normalised 16-bin histogram per RGB channel. The
distance between consecutive frames is half the L1 difference averaged over channels, in [0, 1]:
0 for identical colour content, 1 for disjoint. Motion within a shot moves little colour mass; a cut
replaces it, so a threshold of about 0.35 separates the two.
"""

from __future__ import annotations

import av
import numpy as np

BINS = 16
MIN_SCENE_FRAMES = 8


def frame_histogram(rgb: np.ndarray) -> np.ndarray:
    step = max(1, rgb.shape[1] // 64)
    pixels = rgb[::step, ::step].reshape(-1, 3)
    counts = [np.bincount(pixels[:, channel] // (256 // BINS), minlength=BINS) for channel in range(3)]
    return np.stack(counts).astype(np.float64) / len(pixels)


def histogram_distance(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.abs(first - second).sum(axis=1).mean() / 2)


def read_histograms(path) -> tuple[list[np.ndarray], float]:
    """Histograms of every decoded frame and the stream's native frame rate."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        histograms = [frame_histogram(frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)]
    if fps <= 0:
        raise ValueError("the video stream has no frame rate")
    return histograms, fps


def find_cuts(histograms: list[np.ndarray], threshold: float) -> list[int]:
    """Indices of frames that start a new shot."""
    cuts = []
    for index in range(1, len(histograms)):
        if histogram_distance(histograms[index - 1], histograms[index]) > threshold:
            if index - (cuts[-1] if cuts else 0) >= MIN_SCENE_FRAMES:
                cuts.append(index)
    return cuts


def split_scenes(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """[start, end) frame ranges between cuts."""
    bounds = [0, *cuts, num_frames]
    return [(start, end) for start, end in zip(bounds, bounds[1:]) if end > start]


def detect_scenes(path, threshold: float = 0.35) -> tuple[list[tuple[int, int]], float, int]:
    """(scenes, fps, frame count) of a video file."""
    histograms, fps = read_histograms(path)
    return split_scenes(len(histograms), find_cuts(histograms, threshold)), fps, len(histograms)
