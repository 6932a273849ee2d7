"""Speakers found by themselves: two espeak-ng voices (tests/audio/data/two_voices.flac, made by
tools/make_two_voices.py; its true turns are in the JSON beside it), one voice, silence, the text form, the missing
packages, and the word "auto" in the command line and the nodes."""

import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from mtv_core.audio import Waveform, diarize, diarize_file, format_speaker_ranges, load_audio, parse_speaker_ranges
from mtv_core.audio.diarize import PACKAGES, require_speaker_models
from mtv_core.cli import build_parser
from mtv_core.cli.generate import build_job
from mtv_core.cli.job import GenerationJob, ModelFiles, validate_job, with_found_speakers
from mtv_core.errors import ConfigError
from mtv_lab.evaluation.diarization import diarization_error

DATA = Path(__file__).parent / "data" / "two_voices.flac"
TRUTH = [(turn["start"], turn["end"], turn["speaker"]) for turn in json.loads(DATA.with_suffix(".json").read_text())["turns"]]
MAX_DER = 0.1  # measured 0 on this file: the margin is for other versions of torch and silero-vad
INSTALL = 'pip install "comfyui-mtv[speakers]"'
# find_spec, not importorskip: importing resemblyzer itself can fail (its webrtcvad needs pkg_resources) although
# its weights, all that is used, are installed.
needs_models = pytest.mark.skipif(any(importlib.util.find_spec(name) is None for name in PACKAGES),
                                  reason=f"silero-vad or resemblyzer is not installed ({INSTALL})")


def one_voice(speaker: int) -> Waveform:
    """Only the given speaker's turns of the test file, half a second apart."""
    samples = load_audio(DATA, sample_rate=16000, mono=True).samples
    pieces = [piece for start, end, who in TRUTH if who == speaker
              for piece in (samples[:, round(start * 16000):round(end * 16000)], torch.zeros(1, 8000))]
    return Waveform(torch.cat(pieces, dim=1), 16000)


@needs_models
def test_two_voices_are_found_with_few_errors():
    found = diarize_file(DATA)
    assert found.voices == 2 and found.ranges[0][2] == 1  # speaker 1 speaks first
    assert diarization_error(TRUTH, found.ranges).rate < MAX_DER
    assert "found two voices" in found.summary()


@needs_models
@pytest.mark.parametrize("speaker", [1, 2])
def test_one_voice_stays_with_speaker_one(speaker):
    found = diarize(one_voice(speaker))
    assert found.voices == 1 and {who for _, _, who in found.ranges} == {1}
    assert "found one voice only" in found.summary() and "everything stays with speaker 1" in found.summary()


@needs_models
def test_silence_is_no_speech():
    found = diarize(Waveform(torch.zeros(2, 44100), 44100))
    assert (found.voices, found.ranges, found.text) == (0, [], "")
    assert "found no speech" in found.summary()


@needs_models
def test_the_text_form_reads_back_as_the_ranges():
    found = diarize_file(DATA)
    assert parse_speaker_ranges(found.text) == found.ranges


@needs_models
def test_importing_silero_vad_leaves_the_torch_threads_alone(monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "silero_vad"]:
        monkeypatch.delitem(sys.modules, name)  # so that it is imported again, running its module code
    torch.set_num_threads(2)
    diarize(Waveform(torch.zeros(1, 16000), 16000))
    assert torch.get_num_threads() == 2


def test_the_error_rate_forgives_the_collars_and_the_speaker_numbers():
    truth = [(0.0, 2.0, 1), (2.0, 4.0, 2)]
    assert diarization_error(truth, [(0.0, 2.0, 2), (2.0, 4.0, 1)]).rate == 0  # numbers swapped
    assert diarization_error(truth, [(0.1, 2.2, 1), (2.2, 3.8, 2)]).rate == 0  # edges off by less than the collar
    merged = diarization_error(truth, [(0.0, 4.0, 1)])  # scored: 0.25-1.75 and 2.25-3.75
    assert merged.speech == pytest.approx(3.0) and merged.confusion == pytest.approx(1.5) and merged.rate == pytest.approx(0.5)
    missed = diarization_error(truth, [(0.0, 2.0, 1), (5.0, 6.0, 2)])
    assert (missed.missed, missed.false_alarm) == (pytest.approx(1.5), pytest.approx(1.0))


def test_ranges_written_as_text_read_back():
    ranges = [(0.0, 2.5, 1), (2.75, 4.125, 2), (5.0, 6.0, 1)]
    assert format_speaker_ranges(ranges) == "0.00-2.50:1, 2.75-4.12:2, 5.00-6.00:1"
    assert parse_speaker_ranges(format_speaker_ranges(ranges[:1])) == ranges[:1]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_missing_package_names_the_extra_in_one_line(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: importing it fails
    for call in (require_speaker_models, lambda: diarize(Waveform(torch.zeros(1, 16000), 16000))):
        with pytest.raises(ConfigError) as error:
            call()
        assert INSTALL in str(error.value) and package in str(error.value) and "\n" not in str(error.value)


def test_the_command_line_takes_auto_or_ranges_not_both(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--out", "o.mp4", "--speakers", "auto", "--speaker-ranges", "0-1:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    job = build_job(build_parser().parse_args(
        ["generate", "--audio", str(DATA), "--prompt", "two people talk", "--out", str(tmp_path / "o.mp4"), "--speakers", "auto"]))
    assert job.speaker_ranges == "auto"


@needs_models
def test_the_command_line_refuses_auto_with_a_second_speaker_file_or_a_single_speaker_model(tmp_path):
    job = build_job(build_parser().parse_args(
        ["generate", "--audio", str(DATA), "--prompt", "two people talk", "--out", str(tmp_path / "o.mp4"), "--speakers", "auto"]))
    with pytest.raises(ConfigError, match="single-speaker model.*leave out --speech2, --speaker-ranges and --speakers"):
        validate_job(job)  # the demo model has one speaker
    job.files.streams["speech2"] = DATA
    with pytest.raises(ConfigError, match="give either --speech2 FILE or --speaker-ranges / --speakers auto, not both"):
        validate_job(job)


@needs_models
def test_the_job_prints_and_uses_the_ranges_it_finds(tmp_path, capsys):
    job = GenerationJob(audio=DATA, schedule=None, out=tmp_path / "o.mp4", files=ModelFiles(None, None, None, None),
                        speaker_ranges="auto")
    found = with_found_speakers(job, {"speech": DATA}).speaker_ranges
    assert found == diarize_file(DATA).text
    printed = capsys.readouterr().err
    assert "speakers: found two voices" in printed and f"--speaker-ranges '{found}'" in printed


@needs_models
def test_the_stems_node_splits_on_auto_and_logs_the_ranges(caplog):
    from nodes.audio import MTVStemsFromAudio
    from nodes.comfy_adapter import to_comfy_audio

    speech = to_comfy_audio(load_audio(DATA))
    with caplog.at_level(logging.INFO):
        (stems,) = MTVStemsFromAudio().combine(speech, speaker_ranges=" Auto ")
    assert "[MTV] speakers: found two voices" in caplog.text
    second_turn = slice(round(1.0 * stems.sample_rate), round(2.5 * stems.sample_rate))
    assert stems.streams["speech2"][:, second_turn].abs().max() > 0.1
    assert stems.streams["speech"][:, second_turn].abs().max() == 0
