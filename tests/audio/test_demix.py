import json
import pickle

import numpy as np
import pytest
import torch
from audio_signals import tone

from mtv_core.audio import Waveform, load_audio, stems_from_files
from mtv_core.audio.demix import track_mapping
from mtv_core.checkpoints import convert_demixer, load_demixer
from mtv_core.cli import main
from mtv_core.errors import AudioInputError, ModelFileError


def _mix(seconds=2.3, rate=44100, channels=2):
    generator = torch.Generator().manual_seed(0)
    return Waveform(0.1 * torch.randn(channels, round(seconds * rate), generator=generator), rate)


def test_layouts_map_to_mtv_tracks():
    assert track_mapping(["music", "effect", "dialog"]) == ("cinematic", {"music": [0], "effects": [1], "speech": [2]})
    layout, mapping = track_mapping(["drums", "bass", "other", "vocals"])
    assert layout == "music" and mapping == {"speech": [3], "effects": [], "music": [0, 1, 2]}


@pytest.mark.parametrize("fixture", ["cinematic_th", "music4_th"])
def test_tiny_htdemucs_end_to_end_through_safetensors(request, tmp_path, fixture):
    from demucs.apply import apply_model
    from demucs.states import load_model

    th_path = request.getfixturevalue(fixture)
    converted = tmp_path / "model.safetensors"
    convert_demixer(th_path, converted)
    demixer = load_demixer([converted])
    mix = _mix()
    calls = []
    stems = demixer.separate(mix, progress=lambda done, total: calls.append((done, total)), speech_gate_dbfs=None)
    reference = apply_model(load_model(str(th_path)).float(), mix.samples[None], shifts=0, split=True, overlap=0.25)[0]
    _, mapping = track_mapping(demixer.sources)
    for track, indices in mapping.items():
        expected = reference[indices].sum(dim=0) if indices else torch.zeros(2, mix.num_samples)
        assert torch.allclose(stems.streams[track], expected, atol=1e-5), track
    assert calls[-1] == (mix.num_samples, mix.num_samples) and all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    assert stems.sample_rate == 44100 and stems.duration == pytest.approx(mix.duration)
    assert stems.present["effects"] == (fixture == "cinematic_th")
    assert ("effects" in stems.flags) == (fixture == "music4_th")


def test_chunked_stream_equals_single_pass_and_models_average(cinematic_th, tmp_path):
    from demucs.states import load_model

    demixer = load_demixer([cinematic_th, cinematic_th])  # the mean of two equal models equals one
    short = _mix(seconds=0.7)  # shorter than one segment: one forward pass, centred in the segment
    left = (44100 - short.num_samples) // 2
    padded = torch.nn.functional.pad(short.samples, (left, 44100 - short.num_samples - left))
    with torch.no_grad():
        single_pass = load_model(str(cinematic_th)).float()(padded[None])[0, 2, :, left:left + short.num_samples]
    stems = demixer.separate(short, speech_gate_dbfs=None)
    assert torch.allclose(stems.streams["speech"], single_pass, atol=1e-5)
    long = _mix(seconds=3.1)
    demixer = load_demixer([cinematic_th], overlap=0.5)
    whole = demixer.separate(long, block_seconds=100)
    streamed = demixer.separate(long, block_seconds=0.37)
    assert all(torch.allclose(whole.streams[name], streamed.streams[name], atol=1e-6) for name in whole.streams)


def test_the_speech_stem_is_gated_where_quiet_and_the_others_are_not(cinematic_th):
    demixer = load_demixer(cinematic_th)
    mix = _mix(seconds=1.3)
    separated = demixer.separate(mix, speech_gate_dbfs=None)
    speech_level = 10 * torch.log10(separated.streams["speech"].pow(2).mean())
    above = demixer.separate(mix, speech_gate_dbfs=min(0.0, float(speech_level) + 30))  # the whole stem is "leakage"
    assert above.streams["speech"].abs().max() == 0 and separated.streams["speech"].abs().max() > 0
    assert all(torch.equal(above.streams[name], separated.streams[name]) for name in ("effects", "music"))
    below = demixer.separate(mix, speech_gate_dbfs=float(speech_level) - 30)
    opened = round(0.03 * 44100)  # after the level's first window and the ramp
    assert torch.equal(below.streams["speech"][:, opened:], separated.streams["speech"][:, opened:])
    assert torch.equal(demixer.separate(mix, speech_gate_dbfs=-200.0).streams["speech"], separated.streams["speech"])


def test_mono_and_other_rates_are_accepted(cinematic_th):
    demixer = load_demixer(cinematic_th)
    stems = demixer.separate(Waveform(torch.from_numpy(tone(300, 1.0, 8000)), 8000))
    assert stems.streams["music"].shape == (2, 44100)


def test_untrusted_pickles_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("owned",))

    evil = tmp_path / "evil.th"
    torch.save({"klass": Payload(), "args": [], "kwargs": {}, "state": {}}, evil)
    with pytest.raises(ModelFileError, match="refused to load"):
        load_demixer([evil])
    plain = tmp_path / "plain.th"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(ModelFileError, match="not a demucs model package"):
        load_demixer([plain])
    truncated = tmp_path / "cut.th"
    truncated.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(ModelFileError):
        load_demixer([truncated])


def test_stems_from_files_aligns_rates_and_rejects_mismatched_lengths(write):
    speech = write("speech.wav", tone(200, 1.0, 16000), 16000)
    music = write("music.flac", tone(440, 1.0, 44100, channels=2), 44100)
    stems = stems_from_files(speech=speech, music=music)
    assert stems.sample_rate == 16000 and stems.streams["music"].shape == (2, 16000)
    assert stems.flags == {"effects": "not given"} and not stems.present["effects"]
    long = write("long.wav", tone(200, 2.0, 16000), 16000)
    with pytest.raises(AudioInputError, match="give stems cut from the same audio"):
        stems_from_files(speech=speech, effects=long)


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "ogg", "opus", "m4a", "mp4", "mov", "mkv", "webm"])
def test_demix_cli_on_every_format(cinematic_th, write, tmp_path, suffix):
    rate = 48000
    path = write(f"input.{suffix}", tone(440, 1.2, rate, amplitude=0.3, channels=2), rate)
    out = tmp_path / f"stems-{suffix}"
    assert main(["demix", str(path), "--model", str(cinematic_th), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sample_rate"] == 44100 and report["duration"] == pytest.approx(1.2, abs=0.03)
    assert set(report["stems"]) == {"speech", "effects", "music"}
    for name, stem in report["stems"].items():
        audio = load_audio(out / stem["file"])
        assert audio.samples.shape[0] == 2 and audio.num_samples == round(report["duration"] * 44100)
        assert stem["peak_dbfs"] == pytest.approx(20 * np.log10(audio.samples.abs().max().item()), abs=0.01)
        assert isinstance(stem["silent"], bool)
    assert sorted(p.name for p in out.iterdir()) == ["effects.wav", "music.wav", "report.json", "speech.wav"]


def test_demix_cli_matches_library_and_leaves_nothing_on_failure(cinematic_th, write, tmp_path):
    path = write("in.wav", _mix(seconds=1.5).samples.numpy(), 44100, codec="pcm_f32le", sample_format="flt")
    out = tmp_path / "out"
    assert main(["demix", str(path), "--model", str(cinematic_th), "--out", str(out)]) == 0
    stems = load_demixer(cinematic_th).separate(load_audio(path))
    assert torch.allclose(load_audio(out / "speech.wav").samples, stems.streams["speech"], atol=1e-6)
    report = json.loads((out / "report.json").read_text())
    assert report["source_id"] == stems.source_id and report["speech_gate_dbfs"] == -45.0
    ungated = tmp_path / "ungated"
    assert main(["demix", str(path), "--model", str(cinematic_th), "--out", str(ungated), "--speech-gate-dbfs", "off"]) == 0
    assert json.loads((ungated / "report.json").read_text())["speech_gate_dbfs"] is None
    assert torch.allclose(load_audio(ungated / "speech.wav").samples,
                          load_demixer(cinematic_th).separate(load_audio(path), speech_gate_dbfs=None).streams["speech"], atol=1e-6)
    assert main(["demix", str(path), "--model", str(cinematic_th), "--out", str(tmp_path / "x"), "--speech-gate-dbfs", "6"]) == 1
    broken = tmp_path / "broken.wav"
    broken.write_bytes(path.read_bytes()[:2000])
    failed = tmp_path / "failed"
    assert main(["demix", str(broken), "--model", str(cinematic_th), "--out", str(failed)]) == 1
    assert not failed.exists() or not any(failed.iterdir())


def test_convert_demixer_cli(cinematic_th, tmp_path, capsys):
    output = tmp_path / "cdx.safetensors"
    assert main(["convert-demixer", "--input", str(cinematic_th), "--output", str(output)]) == 0
    assert "layout cinematic" in capsys.readouterr().out
    assert load_demixer(output).layout == "cinematic"


@pytest.mark.parametrize("stop_at", [2, 3])
def test_a_stop_while_the_stem_files_open_leaves_no_partial_file(cinematic_th, write, tmp_path, monkeypatch, stop_at):
    """Ctrl-C can land between one stem file's creation and the next: nothing of the run may stay behind."""
    from mtv_core.audio import demix

    path = write("mix.wav", _mix().samples.numpy(), 44100, codec="pcm_f32le", sample_format="flt")
    opened, real_writer = [], demix.WavWriter

    def writer(*args):
        opened.append(args[0])
        if len(opened) == stop_at:
            raise KeyboardInterrupt
        return real_writer(*args)

    monkeypatch.setattr(demix, "WavWriter", writer)
    out = tmp_path / "stems"
    with pytest.raises(KeyboardInterrupt):
        demix.demix_to_files(path, load_demixer(cinematic_th), out)
    assert list(out.iterdir()) == []
