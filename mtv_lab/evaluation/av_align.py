"""AV-Align as TempoTokens (Yariv et al. 2023) defines it.

Audio peaks: onset detection (librosa-style: positive spectral flux of a dB spectrogram, normalised to
[0, 1], peak-picked with librosa's default windows). Video peaks: strict local maxima of the mean
Farneback optical-flow magnitude between consecutive frames. An audio peak matches when a video peak
lies within one frame of it; score = matches / (audio peaks + video peaks - matches).
"""

import cv2
import numpy as np

# librosa.onset defaults, expressed for any sample rate (librosa: 2048 / 512 samples at 22050 Hz)
FFT_SECONDS, HOP_SECONDS, TOP_DB = 2048 / 22050, 512 / 22050, 80.0
PRE_MAX, POST_MAX, PRE_AVG, POST_AVG, WAIT, DELTA = 0.03, 0.0, 0.10, 0.10, 0.03, 0.07
# cv2.calcOpticalFlowFarneback arguments used by TempoTokens
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def onset_strength(audio: np.ndarray, sample_rate: int, both_ways: bool = False) -> tuple[np.ndarray, float]:
    """Per-hop onset strength of mono audio, and the hop length in seconds (hop t is at t * hop). `both_ways`
    counts sound that fades as well as sound that starts (a mouth moves when a syllable ends too)."""
    n_fft = int(round(FFT_SECONDS * sample_rate))
    hop = max(1, int(round(HOP_SECONDS * sample_rate)))
    padded = np.pad(np.asarray(audio, np.float64), n_fft // 2)
    count = 1 + max(0, len(padded) - n_fft) // hop
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    decibels = 10 * np.log10(np.maximum(power, 1e-10))
    decibels = np.maximum(decibels, decibels.max() - TOP_DB)
    change = np.diff(decibels, axis=0)
    flux = (np.abs(change) if both_ways else np.maximum(0.0, change)).mean(axis=1)
    return np.concatenate([[0.0], flux]), hop / sample_rate


def pick_peaks(strength: np.ndarray, hop_seconds: float) -> list[int]:
    """librosa.util.peak_pick with onset_detect's defaults, on the strength normalised to [0, 1]."""
    if strength.size == 0 or np.ptp(strength) == 0:
        return []
    env = (strength - strength.min()) / np.ptp(strength)
    pre_max, post_max = int(PRE_MAX / hop_seconds), int(POST_MAX / hop_seconds) + 1
    pre_avg, post_avg, wait = int(PRE_AVG / hop_seconds), int(POST_AVG / hop_seconds) + 1, int(WAIT / hop_seconds)
    peaks, last = [], -np.inf
    for index in range(env.size):
        local = env[max(0, index - pre_max):index + post_max]
        average = env[max(0, index - pre_avg):index + post_avg].mean()
        if env[index] == local.max() and env[index] >= average + DELTA and index > last + wait:
            peaks.append(index)
            last = index
    return peaks


def audio_peak_times(audio: np.ndarray, sample_rate: int) -> list[float]:
    strength, hop_seconds = onset_strength(audio, sample_rate)
    return [index * hop_seconds for index in pick_peaks(strength, hop_seconds)]


def flow_magnitudes(frames: np.ndarray) -> np.ndarray:
    """Mean Farneback flow magnitude into each frame; frame 0 repeats frame 1's value (as TempoTokens)."""
    grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    magnitudes = [float(np.linalg.norm(cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK), axis=2).mean())
                  for a, b in zip(grey, grey[1:])]
    return np.array(magnitudes[:1] + magnitudes)


def local_maxima(values: np.ndarray) -> list[int]:
    return [i for i in range(1, len(values) - 1) if values[i - 1] < values[i] > values[i + 1]]


def av_align_score(audio_times: list[float], video_times: list[float], fps: float) -> float | None:
    """matches / (audio + video - matches); a match is an audio peak within one frame of a video peak.
    None when there are no peaks at all."""
    tolerance = 1.0 / fps + 1e-9
    matches = sum(any(abs(a - v) <= tolerance for v in video_times) for a in audio_times)
    union = len(audio_times) + len(video_times) - matches
    return matches / union if union else None


def av_align(frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float) -> dict:
    """The score with the peaks and curves it came from (times in seconds)."""
    audio_times = audio_peak_times(audio, sample_rate)
    flow = flow_magnitudes(frames)
    video_times = [index / fps for index in local_maxima(flow)]
    return {"score": av_align_score(audio_times, video_times, fps), "audio_peaks": audio_times,
            "video_peaks": video_times, "flow": flow}
