import wave

import numpy as np
import pytest
import torch
from audio_signals import dominant_frequency, tone

from mtv_core.audio import load_audio, probe_audio, save_wav, to_stereo
from mtv_core.audio.io import MAX_TRAILING_PADDING, Waveform, WavWriter
from mtv_core.errors import AudioInputError

LOSSLESS = ["wav", "flac"]
# Lossy decoders here remove their priming (encoder delay) and AAC's end padding is cut to the declared
# length, so counts come out exact; the tolerance we promise is one codec frame of padding.
LOSSY = ["mp3", "ogg", "opus", "m4a", "mp4", "mov", "mkv", "webm"]
LOSSY_TOLERANCE_SAMPLES = MAX_TRAILING_PADDING


def _noise(seconds, rate, channels=2, seed=0):
    return (0.2 * np.random.default_rng(seed).standard_normal((channels, round(seconds * rate)))).astype(np.float32)


@pytest.mark.parametrize("suffix", LOSSLESS)
def test_lossless_files_decode_exactly(write, suffix):
    samples = np.round(_noise(1.5, 44100) * 32767) / 32767
    waveform = load_audio(write(f"a.{suffix}", samples, 44100))
    assert waveform.sample_rate == 44100 and waveform.samples.dtype == torch.float32
    assert waveform.num_samples == samples.shape[1]
    assert torch.allclose(waveform.samples, torch.from_numpy(samples).float(), atol=1.5 / 32768)


@pytest.mark.parametrize("suffix", LOSSY)
def test_lossy_files_keep_length_and_timing(write, suffix):
    rate = 48000
    samples = tone(440, 2.0, rate, channels=2)
    samples[:, rate:rate + 48] = 0.9  # a burst at exactly 1 s
    waveform = load_audio(write(f"a.{suffix}", samples, rate))
    assert abs(waveform.num_samples - samples.shape[1]) <= LOSSY_TOLERANCE_SAMPLES
    assert abs(dominant_frequency(waveform.samples[0, 2000:40000].numpy(), rate) - 440) < 2
    burst = int(torch.argmax(waveform.samples[0, rate - 4000:rate + 4000].abs())) + rate - 4000
    assert abs(burst - rate) < 64, "audio must not be shifted by codec priming"


def test_mono_8k_and_surround_96k(write):
    mono = load_audio(write("m.wav", tone(300, 1.0, 8000), 8000))
    assert mono.samples.shape == (1, 8000) and mono.sample_rate == 8000
    surround = np.stack([tone(100 * (i + 1), 0.5, 96000)[0] * 0.3 for i in range(6)])
    waveform = load_audio(write("s.flac", surround, 96000))
    assert waveform.samples.shape == (6, 48000) and waveform.channel_names == ("FL", "FR", "FC", "LFE", "BL", "BR")
    stereo = to_stereo(waveform).samples
    expected_left = (surround[0] + surround[2] * 0.5**0.5 + surround[4]) / (2 + 0.5**0.5)
    assert np.allclose(stereo[0].numpy(), expected_left, atol=1e-4)
    down = load_audio(write("s2.flac", surround, 96000), sample_rate=16000, mono=True)
    assert down.samples.shape == (1, 8000)


def test_start_and_duration_are_sample_exact(write):
    rate = 16000
    ramp = (np.arange(rate * 6) / (rate * 6)).astype(np.float32)[None]
    path = write("ramp.wav", ramp, rate, codec="pcm_f32le", sample_format="flt")
    for start in (0.25, 3.5):  # 3.5 s takes the seek path
        piece = load_audio(path, start=start, duration=1.25)
        first = round(start * rate)
        assert piece.num_samples == 20000
        assert torch.equal(piece.samples[0], torch.from_numpy(ramp[0, first:first + 20000]))
    with pytest.raises(AudioInputError, match="past the end"):
        load_audio(path, start=10.0)


def test_save_wav_round_trip_and_atomicity(tmp_path):
    waveform = Waveform(torch.rand(2, 3000) - 0.5, 44100)
    path = tmp_path / "out" / "x.wav"
    save_wav(path, waveform)
    assert torch.equal(load_audio(path).samples, waveform.samples)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.wav"]
    with pytest.raises(AudioInputError, match="channels"):
        with WavWriter(tmp_path / "bad.wav", 8000, 1) as writer:
            writer.write(torch.zeros(1, 10))
            writer.write(torch.zeros(2, 10))
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "a failed write leaves no file behind"


def test_bad_inputs_name_the_file_and_the_remedy(tmp_path, write):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    zero = tmp_path / "zero.wav"
    with wave.open(str(zero), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    truncated = write("cut.wav", _noise(2.0, 16000), 16000)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    truncated_flac = write("cut.flac", _noise(2.0, 16000), 16000)
    truncated_flac.write_bytes(truncated_flac.read_bytes()[: truncated_flac.stat().st_size // 2])
    unsupported = write("codec.wav", _noise(0.5, 16000), 16000)
    data = bytearray(unsupported.read_bytes())
    fmt = data.find(b"fmt ")
    data[fmt + 8:fmt + 10] = (0x1234).to_bytes(2, "little")
    unsupported.write_bytes(bytes(data))
    nan = write("nan.wav", np.array([[0.1, np.nan, np.inf] * 100], np.float32), 16000, codec="pcm_f32le", sample_format="flt")
    from avwrite import write_video_only

    video_only = tmp_path / "silent-film.mp4"
    write_video_only(video_only)
    cases = {
        empty: "empty", zero: "no samples", corrupt: "not a readable", truncated: "truncated", truncated_flac: "corrupt",
        unsupported: "not supported", nan: "NaN or infinite", video_only: "no audio stream", tmp_path / "missing.wav": "no such file",
    }
    for path, message in cases.items():
        with pytest.raises(AudioInputError, match=message) as error:
            load_audio(path)
        assert str(path) in str(error.value)


def test_probe_reports_stream_parameters(write):
    info = probe_audio(write("p.m4a", tone(440, 1.0, 44100, channels=2), 44100))
    assert (info.sample_rate, info.num_channels, info.codec) == (44100, 2, "aac")
    assert abs(info.declared_duration - 1.0) < 0.03
