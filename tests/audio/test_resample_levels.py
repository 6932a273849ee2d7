import pytest
import torch
from audio_signals import dominant_frequency, tone

from mtv_core.audio import (
    LevelMeter,
    StreamResampler,
    is_silent,
    measure,
    normalize_loudness,
    resample,
    windowed_rms_dbfs,
)
from mtv_core.audio.levels import FLOOR_DBFS, FrameLevels


@pytest.mark.parametrize("orig, new", [(44100, 16000), (8000, 44100), (96000, 48000), (48000, 44100)])
def test_tone_keeps_its_frequency(orig, new):
    resampled = resample(torch.from_numpy(tone(440, 1.0, orig)), orig, new)
    assert resampled.shape == (1, new)
    assert abs(dominant_frequency(resampled[0].numpy(), new) - 440) <= 1.0


def test_band_limited_no_aliasing():
    # 9 and 12 kHz lie above the 8 kHz Nyquist of the 16 kHz output: a band-limited resampler removes them
    # instead of folding them back to 7 and 4 kHz.
    resampled = resample(torch.from_numpy(tone(9000, 1.0, 44100) + tone(12000, 1.0, 44100)), 44100, 16000)
    assert resampled[0, 800:-800].abs().max() < 0.02


@pytest.mark.parametrize("orig, new", [(44100, 16000), (8000, 44100), (48000, 44100)])
def test_stream_resampler_equals_whole_signal(orig, new):
    signal = torch.randn(2, orig * 2 + 17)
    resampler = StreamResampler(orig, new)
    cuts = [0, 1, 333, 5000, 5001, 30000, signal.shape[1]]
    pieces = [resampler.push(signal[:, a:b]) for a, b in zip(cuts, cuts[1:])] + [resampler.flush()]
    streamed = torch.cat([piece.reshape(2, -1) for piece in pieces], dim=1)
    whole = resample(signal, orig, new)
    assert streamed.shape == whole.shape
    assert torch.allclose(streamed, whole, atol=1e-5)


def test_levels_of_known_signals():
    rate = 16000
    sine = torch.from_numpy(tone(1000, 2.0, rate, amplitude=1.0))
    report = measure(sine, rate)
    assert report.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert report.rms_dbfs == pytest.approx(-3.01, abs=0.01)
    assert not report.silent
    quiet = sine * 10 ** (-50 / 20)
    assert is_silent(quiet, rate) and not is_silent(quiet, rate, silence_dbfs=-60)
    assert measure(torch.zeros(1, rate), rate).silent


def test_short_event_in_long_silence_is_present_and_windows_locate_it():
    rate = 8000
    signal = torch.zeros(1, rate * 60)
    signal[:, rate * 12:rate * 12 + rate // 2] = torch.from_numpy(tone(500, 0.5, rate, amplitude=0.05))
    assert measure(signal, rate).rms_dbfs < -45, "whole-file RMS alone would call it silent"
    assert not is_silent(signal, rate)
    levels = windowed_rms_dbfs(signal, rate, window_seconds=0.5)
    assert levels.shape == (120,) and int(levels.argmax()) == 24
    assert levels[24] == pytest.approx(-29.03, abs=0.05)


def test_level_meter_blocks_equal_whole():
    rate = 8000
    signal = torch.randn(2, rate * 3 + 5) * 0.1
    meter = LevelMeter(rate)
    for start in range(0, signal.shape[1], 1234):
        meter.update(signal[:, start:start + 1234])
    blockwise, whole = meter.report(), measure(signal, rate)
    assert blockwise.peak_dbfs == pytest.approx(whole.peak_dbfs) and blockwise.rms_dbfs == pytest.approx(whole.rms_dbfs, abs=1e-6)
    assert blockwise.max_window_rms_dbfs == pytest.approx(whole.max_window_rms_dbfs, abs=1e-6)


def test_frame_levels_give_each_video_frame_its_own_rms_whatever_the_blocks():
    """A 0.5-amplitude square wave for frames 0-9 at 24 fps (16 kHz: 666.67 samples a frame), then silence: -6.02
    dBFS in those frames, the floor after; frame 10 starts at sample 6667, so it holds no tone."""
    rate, fps = 16000, 24.0
    signal = torch.zeros(rate)
    signal[:6667] = 0.5 * torch.sign(torch.sin(torch.arange(6667) * 0.3) + 1e-9)
    whole, blockwise = FrameLevels(rate, fps), FrameLevels(rate, fps)
    whole.update(signal)
    for start in range(0, rate, 999):
        blockwise.update(signal[start:start + 999])
    levels = whole.levels(30)
    assert torch.allclose(levels[:10], torch.full((10,), -6.0206), atol=1e-3)
    assert (levels[10:] == FLOOR_DBFS).all()  # frames 24..29 lie past the second of audio: no samples, the floor
    assert torch.equal(blockwise.levels(30), levels)
    assert whole.levels(5).shape == (5,)


def test_loudness_normalisation():
    signal = torch.from_numpy(tone(440, 1.0, 16000, amplitude=0.01))
    louder = normalize_loudness(signal, target_dbfs=-20.0)
    assert measure(louder, 16000).rms_dbfs == pytest.approx(-20.0, abs=0.01)
    limited = normalize_loudness(signal, target_dbfs=0.0, peak_limit_dbfs=-1.0)
    assert measure(limited, 16000).peak_dbfs == pytest.approx(-1.0, abs=0.01)
    assert torch.equal(normalize_loudness(torch.zeros(1, 100)), torch.zeros(1, 100))
