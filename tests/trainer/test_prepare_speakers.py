"""`prepare` with "auto" in the captions' speaker_ranges column: the speakers found in the clip's speech stem (the
real two-voice file), printed per clip, splitting the speech exactly as the same ranges written by hand, and the
cache keyed by the ranges used; garbage in the cell and a missing extra are refused naming the cell."""

import csv
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from test_prepare import write_mp4, write_wav

from mtv_core.audio import AudioFeatures, diarize_file, load_audio, parse_speaker_ranges
from mtv_lab.evaluation.diarization import diarization_error
from trainer import TrainerError
from trainer.dataset import read_manifest
from trainer.prepare import PrepareOptions, clip_info, prepare_dataset

DATA = Path(__file__).parents[1] / "audio" / "data" / "two_voices.flac"
TRUTH = [(turn["start"], turn["end"], turn["speaker"]) for turn in json.loads(DATA.with_suffix(".json").read_text())["turns"]]
MAX_DER = 0.1  # as tests/audio/test_diarize.py
PACKAGES, INSTALL = ("silero_vad", "resemblyzer"), 'pip install "comfyui-mtv[speakers]"'
needs_models = pytest.mark.skipif(any(importlib.util.find_spec(name) is None for name in PACKAGES),
                                  reason=f"silero-vad or resemblyzer is not installed ({INSTALL})")
CAPTION = {"conversation": "two", "person1": "A man", "person2": "A woman", "scene": "A room"}


@pytest.fixture
def clips(tmp_path):
    """duo.mp4 (one 9 s shot, no audio track) with the two-voice recording as its pre-separated speech stem."""
    folder = tmp_path / "clips"
    folder.mkdir()
    speech = load_audio(DATA, sample_rate=16000, mono=True).samples[0].numpy()
    write_mp4(folder / "duo.mp4", [(90, 120, 150)] * int(len(speech) / 16000 * 24))
    write_wav(folder / "duo_speech.wav", speech)
    return folder


def write_captions(folder: Path, ranges: str) -> Path:
    with open(folder / "captions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["clip", *CAPTION, "speaker_ranges"])
        writer.writeheader()
        writer.writerow({"clip": "duo.mp4", **CAPTION, "speaker_ranges": ranges})
    return folder / "captions.csv"


def prepared(clips: Path, out: Path, wav2vec: Path, ranges: str):
    options = PrepareOptions(clips=clips, out=out, wav2vec=wav2vec, captions=write_captions(clips, ranges))
    return prepare_dataset(options), read_manifest(out)


@needs_models
def test_auto_splits_as_the_ranges_found_written_by_hand(clips, wav2vec_folder, tmp_path, capsys):
    report, auto = prepared(clips, tmp_path / "auto", wav2vec_folder, " Auto ")
    found = diarize_file(clips / "duo_speech.wav")
    printed = capsys.readouterr().err
    assert f"duo.mp4: speakers: found two voices ({found.similarity:.2f} alike): {found.text}" in printed
    assert f"duo.mp4: to correct them, write '{found.text}' instead of auto in its speaker_ranges" in printed
    assert found.voices == 2 and diarization_error(TRUTH, parse_speaker_ranges(found.text)).rate < MAX_DER
    assert report.windows == len(auto) == 4 and not report.skipped
    # the cache key is the ranges used: the same as for those ranges written by hand
    assert {r.fields["second_speaker"] for r in auto} == {hashlib.sha256(found.text.encode()).hexdigest()[:16]}
    assert prepared(clips, tmp_path / "auto", wav2vec_folder, "auto")[0].reused == ["duo.mp4"]
    assert prepared(clips, tmp_path / "auto", wav2vec_folder, found.text)[0].reused == ["duo.mp4"]

    _, hand = prepared(clips, tmp_path / "hand", wav2vec_folder, found.text)
    auto_features, hand_features = (AudioFeatures.load(tmp_path / name / records[0].features)
                                    for name, records in (("auto", auto), ("hand", hand)))
    assert set(auto_features.per_stream) == {"speech", "speech2", "effects", "music"}
    for name, tensor in auto_features.per_stream.items():
        assert torch.equal(tensor, hand_features.per_stream[name]), name
    assert not torch.equal(auto_features.per_stream["speech"], auto_features.per_stream["speech2"])


@pytest.mark.parametrize("cell", ["autox", "auto, 0-1:2", "automatic"])
def test_garbage_in_the_cell_is_refused_naming_it(clips, wav2vec_folder, tmp_path, cell):
    with pytest.raises(TrainerError, match=rf"captions.csv row 1: speaker_ranges: speaker range '{cell.split(',')[0]}' "
                                           r"is not of the form 'start-end:speaker'"):
        prepared(clips, tmp_path / "data", wav2vec_folder, cell)


@pytest.mark.parametrize("package", PACKAGES)
def test_auto_without_the_speakers_extra_names_the_cell_and_the_fix(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(TrainerError) as error:
        clip_info({"clip": "duo.mp4", **CAPTION, "speaker_ranges": " AUTO "}, "captions.csv row 3")
    message = str(error.value)
    assert message.startswith("captions.csv row 3: speaker_ranges: ") and package in message and INSTALL in message
