"""`python -m mtv_core features --speaker-ranges auto`: the speakers found in the speech stem (the real two-voice
file), printed as generate prints them, and the speech split by them exactly as by the same ranges written by hand."""

import shutil
import sys

import pytest
import torch
from test_diarize import DATA, INSTALL, MAX_DER, TRUTH, needs_models

from mtv_core.audio import AudioFeatures, diarize_file, parse_speaker_ranges
from mtv_core.audio.sources import file_sources
from mtv_core.cli import main
from mtv_lab.evaluation.diarization import diarization_error

RATE, RAMP = 16000, 80  # wav2vec2's rate; the range edges fade over 5 ms


def features(folder, out, wav2vec, ranges):
    return main(["features", str(folder), "--wav2vec", str(wav2vec), "--out", str(out), "--speaker-ranges", ranges])


@needs_models
def test_auto_prints_the_ranges_found_and_splits_the_speech_by_them(tmp_path, tiny_wav2vec2_dir, capsys):
    folder = tmp_path / "stems"
    folder.mkdir()
    shutil.copy(DATA, folder / "speech.flac")
    assert features(folder, tmp_path / "auto.safetensors", tiny_wav2vec2_dir, " Auto ") == 0
    printed = capsys.readouterr().err
    found = diarize_file(DATA)
    assert f"speakers: found two voices ({found.similarity:.2f} alike): {found.text}" in printed
    assert f"run again with --speaker-ranges '{found.text}' instead of --speaker-ranges auto" in printed
    ranges = parse_speaker_ranges(found.text)
    assert diarization_error(TRUTH, ranges).rate < MAX_DER

    # The same split as the ranges written by hand: the same features, to the bit.
    assert features(folder, tmp_path / "hand.safetensors", tiny_wav2vec2_dir, found.text) == 0
    auto, hand = (AudioFeatures.load(tmp_path / f"{name}.safetensors") for name in ("auto", "hand"))
    assert set(auto.per_stream) == {"speech", "speech2", "effects", "music"}
    assert all(torch.equal(auto.per_stream[name], hand.per_stream[name]) for name in auto.per_stream)
    assert not torch.equal(auto.per_stream["speech"], auto.per_stream["speech2"])

    # speaker 2's audio is the speech inside the speaker-2 ranges found, and silence everywhere else
    sources, _ = file_sources({"speech": folder / "speech.flac"}, {}, found.text)
    second = torch.cat([block.reshape(-1) for block in sources["speech2"].blocks()])
    inside = torch.zeros_like(second, dtype=torch.bool)
    for start, end, speaker in ranges:
        if speaker == 2:
            inside[round(start * RATE):round(end * RATE)] = True
            assert second[round(start * RATE) + RAMP:round(end * RATE) - RAMP].abs().max() > 0.05
    assert second[~inside].abs().max() == 0


@needs_models
def test_auto_needs_a_speech_stem_and_no_second_speaker_file(tmp_path, tiny_wav2vec2_dir, capsys):
    music = tmp_path / "music.flac"
    shutil.copy(DATA, music)
    assert main(["features", str(music), "--stem", "music", "--wav2vec", str(tiny_wav2vec2_dir),
                 "--out", str(tmp_path / "o.safetensors"), "--speaker-ranges", "auto"]) == 1
    assert "--speaker-ranges needs a speech stem to split" in capsys.readouterr().err
    assert main(["features", str(music), "--stem", "speech", "--wav2vec", str(tiny_wav2vec2_dir), "--speaker2", str(music),
                 "--out", str(tmp_path / "o.safetensors"), "--speaker-ranges", "auto"]) == 1
    assert "give either --speaker2 or --speaker-ranges, not both." in capsys.readouterr().err


@pytest.mark.parametrize("package", ["silero_vad", "resemblyzer"])
def test_auto_without_the_speakers_extra_names_the_fix(tmp_path, tiny_wav2vec2_dir, capsys, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    assert main(["features", str(DATA), "--stem", "speech", "--wav2vec", str(tiny_wav2vec2_dir),
                 "--out", str(tmp_path / "o.safetensors"), "--speaker-ranges", "auto"]) == 1
    printed = capsys.readouterr().err
    assert INSTALL in printed and package in printed
