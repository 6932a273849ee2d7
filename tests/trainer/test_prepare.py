"""`prepare` on real mp4 files: scene split, windows, subsets, report, idempotency, bad input."""

import csv
import json
import shutil
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mtv_core.audio import AudioFeatures
from trainer import TrainerError
from trainer.dataset import read_manifest, write_manifest
from trainer.prepare import PrepareOptions, prepare_dataset

FPS, RATE = 24, 16000


def write_mp4(path, colours, audio=None):
    """One solid-colour 64x64 frame per entry of `colours` (with a moving bar), AAC audio if given."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=RATE, layout="mono") if audio is not None else None
        for index, colour in enumerate(colours):
            image = np.empty((64, 64, 3), np.uint8)
            image[:] = colour
            image[:, (index * 2) % 64] = 255 - np.asarray(colour, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            size = sound.codec_context.frame_size or 1024
            for start in range(0, len(audio), size):
                frame = av.AudioFrame.from_ndarray(audio[None, start:start + size].astype(np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = RATE, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode())


def write_wav(path, samples):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


def tone(seconds, hz=220.0, level=0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return level * np.sin(2 * np.pi * hz * t)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    talk_seconds, cut_seconds = 70 / FPS, 130 / FPS
    write_mp4(folder / "talk.mp4", [(90, 120, 150)] * 70, tone(talk_seconds))
    write_wav(folder / "talk_speech.wav", tone(talk_seconds))
    write_wav(folder / "talk_effects.wav", np.zeros(int(talk_seconds * RATE)))
    write_wav(folder / "talk_music.wav", tone(talk_seconds, 440, 0.1))
    # A hard cut at frame 65: red shot, then blue shot. Clicks in the first shot only; no music.
    write_mp4(folder / "cut.mp4", [(200, 40, 40)] * 65 + [(30, 40, 210)] * 65, tone(cut_seconds))
    clicks = np.zeros(int(cut_seconds * RATE))
    clicks[[int(s * RATE) for s in (0.5, 1.0, 1.5, 2.0)]] = 0.9
    clicks = np.convolve(clicks, np.hanning(400), mode="same")
    write_wav(folder / "cut_speech.wav", tone(cut_seconds))
    write_wav(folder / "cut_effects.wav", clicks)
    write_wav(folder / "cut_music.wav", np.zeros(int(cut_seconds * RATE)))
    write_mp4(folder / "short.mp4", [(10, 200, 10)] * 40, tone(40 / FPS))
    write_mp4(folder / "mute.mp4", [(60, 60, 60)] * 70)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with open(folder / "captions.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["clip", "caption", "persons", "conversation", "person1", "person2", "scene"])
        writer.writeheader()
        writer.writerow({"clip": "talk.mp4", "caption": "One person conversation. Persons: Person1: A man. Person1 is speaking. Scene Description: A room."})
        writer.writerow({"clip": "cut.mp4", "conversation": "two", "person1": "A woman", "person2": "A child", "scene": "A park"})
        for name in ("short.mp4", "mute.mp4", "broken.mp4", "ghost.mp4"):
            writer.writerow({"clip": name, "caption": "No conversation. Scene Description: Nothing.", "persons": "0"})
    return folder


def test_prepare_builds_windows_subsets_and_report(clips, wav2vec_folder, tmp_path):
    out = tmp_path / "data"
    options = PrepareOptions(clips=clips, out=out, wav2vec=wav2vec_folder, captions=clips / "captions.csv")
    report = prepare_dataset(options)

    records = {(r.source.rsplit("/", 1)[-1], r.start_frame): r for r in read_manifest(out)}
    # The cut splits cut.mp4 into shots [0, 65) and [65, 130): one window each, none across the cut.
    assert sorted(records) == [("cut.mp4", 3), ("cut.mp4", 68), ("talk.mp4", 3)]
    assert records["cut.mp4", 3].scene == (0, 65) and records["cut.mp4", 68].scene == (65, 130)
    assert records["talk.mp4", 3].subsets == ["basic_face", "single_character", "visual_mood"]
    assert records["cut.mp4", 3].subsets == ["multi_character", "sound_event"]
    assert records["cut.mp4", 68].subsets == ["multi_character"]
    assert records["cut.mp4", 3].caption == ("Two person conversation. Persons: Person1: A woman. Person2: A child. "
                                             "Person1 is speaking. Scene Description: A park")
    assert records["cut.mp4", 3].persons == 2 and records["talk.mp4", 3].fps == 24.0
    features = AudioFeatures.load(out / records["talk.mp4", 3].features)
    assert features.flat_window(3, 49)["speech"].shape == (49, 5 * 12 * 32)
    assert features.flags == {"effects": "encoded from silence: below -45.0 dBFS"}

    assert set(report.skipped) == {"short.mp4", "mute.mp4", "broken.mp4"}
    assert "too short: longest shot 40 frames" in report.skipped["short.mp4"]
    assert report.skipped["mute.mp4"].startswith("no audio")
    assert "unreadable video" in report.skipped["broken.mp4"]
    assert report.uncaptioned_entries == ["ghost.mp4"]
    assert json.loads((out / "report.json").read_text())["windows"] == 3

    # A second run reuses every finished clip and rewrites nothing.
    stamp = (out / records["talk.mp4", 3].features).stat().st_mtime_ns
    again = prepare_dataset(options)
    assert sorted(again.reused) == ["cut.mp4", "talk.mp4"]
    assert (out / records["talk.mp4", 3].features).stat().st_mtime_ns == stamp
    assert sorted(r.id for r in read_manifest(out)) == sorted(r.id for r in records.values())


def copied(clips, folder: Path, *names) -> Path:
    folder.mkdir()
    for name in names:
        shutil.copy(clips / name, folder / name)
    return folder


def test_a_clip_whose_stem_files_changed_is_prepared_again(clips, wav2vec_folder, tmp_path):
    folder = copied(clips, tmp_path / "clips", "talk.mp4", "talk_speech.wav", "talk_effects.wav", "talk_music.wav")
    options = PrepareOptions(clips=folder, out=tmp_path / "data", wav2vec=wav2vec_folder)
    assert prepare_dataset(options).reused == []
    assert prepare_dataset(options).reused == ["talk.mp4"]
    write_wav(folder / "talk_music.wav", tone(70 / FPS, 330, 0.1))
    assert prepare_dataset(options).reused == []


def test_clips_demixed_before_the_speech_gate_are_demixed_again(clips, wav2vec_folder, tmp_path):
    """A record without the stems' origin (prepared before the gate, from ungated stems) is not reused."""
    pytest.importorskip("demucs")
    from mtv_core.testing import save_tiny_demixer

    options = PrepareOptions(clips=copied(clips, tmp_path / "clips", "talk.mp4"), out=tmp_path / "data", wav2vec=wav2vec_folder,
                             demixer=[save_tiny_demixer(tmp_path / "demixer.safetensors")])
    assert prepare_dataset(options).reused == []
    assert prepare_dataset(options).reused == ["talk.mp4"]
    records = read_manifest(options.out)
    assert all(r.fields["stems"].startswith("demixer ") and r.fields["stems"].endswith(" speech gate -45 dBFS") for r in records)
    for record in records:
        del record.fields["stems"]
    write_manifest(options.out, records)
    assert prepare_dataset(options).reused == []


def test_prepare_rejects_an_empty_folder_and_unmatched_captions(tmp_path, wav2vec_folder, clips):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainerError, match="no video files .* under .*empty"):
        prepare_dataset(PrepareOptions(clips=tmp_path / "empty", out=tmp_path / "d", wav2vec=wav2vec_folder))
    (tmp_path / "other.jsonl").write_text(json.dumps({"clip": "elsewhere.mp4", "caption": "No conversation. Scene Description: x"}) + "\n")
    with pytest.raises(TrainerError, match=r"none of the 1 entries .*'elsewhere.mp4'.*clips are e.g. 'broken.mp4'"):
        prepare_dataset(PrepareOptions(clips=clips, out=tmp_path / "d", wav2vec=wav2vec_folder, captions=tmp_path / "other.jsonl"))


def test_a_second_speaker_comes_from_its_own_file_or_the_captions_ranges(tmp_path, wav2vec_folder):
    from trainer.dataset import ClipDataset

    folder, seconds = tmp_path / "clips", 70 / FPS
    folder.mkdir()
    for name in ("duo", "pair"):
        write_mp4(folder / f"{name}.mp4", [(90, 120, 150)] * 70, tone(seconds))
        write_wav(folder / f"{name}_speech.wav", tone(seconds))
    write_wav(folder / "duo_speech2.wav", tone(seconds, 330, 0.4))
    captions = folder / "captions.csv"

    def write_captions(pair_ranges):
        with open(captions, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["clip", "conversation", "person1", "person2", "scene", "speaker_ranges"])
            writer.writeheader()
            for clip, ranges in (("duo.mp4", ""), ("pair.mp4", pair_ranges)):
                writer.writerow({"clip": clip, "conversation": "two", "person1": "A man", "person2": "A woman",
                                 "scene": "A room", "speaker_ranges": ranges})

    write_captions("0-1.5:1, 1.5-2.9:2")
    out = tmp_path / "data"
    options = PrepareOptions(clips=folder, out=out, wav2vec=wav2vec_folder, captions=captions)
    prepare_dataset(options)
    records = {Path(r.source).stem: r for r in read_manifest(out)}
    dataset = ClipDataset(out, list(records.values()), ("speech", "speech2", "effects", "music"))
    items = {name: dataset._features_window(record) for name, record in records.items()}  # what training sees
    for name, features in items.items():
        assert "speech2" not in AudioFeatures.load(out / records[name].features).flags, name
        assert features["speech2"].abs().mean() > 1e-3, name
    assert not torch.equal(items["duo"]["speech2"], items["duo"]["speech"])
    # pair: the speech moved to speaker 2 after 1.5 s (frame 36); frames 3..38 of the window are before it
    speech, second = items["pair"]["speech"], items["pair"]["speech2"]
    assert (speech[:30] - second[:30]).abs().mean() > 1e-3 and (speech[40:] - second[40:]).abs().mean() > 1e-3

    write_captions("0-2.9:2")  # other ranges: pair is prepared again, duo is reused
    again = prepare_dataset(options)
    assert again.reused == ["duo.mp4"]
    (moved,) = [r for r in read_manifest(out) if r.source.endswith("pair.mp4")]
    assert moved.features != records["pair"].features

    write_captions("0-1:3")
    with pytest.raises(TrainerError, match="row 2: speaker_ranges: speaker range '0-1:3'"):
        prepare_dataset(options)
