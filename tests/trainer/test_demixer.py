"""`python -m trainer demixer`: a small HTDemucs fitted to clips with stems, written in the format the demixer
loader reads."""

import random

import pytest
import torch

from mtv_core.checkpoints import load_demixer
from mtv_core.audio.io import Waveform, save_wav
from trainer.cli import main
from trainer.demixer import random_mixes, read_stem_sets
from trainer.errors import TrainerError

RATE = 16000


def write_stems(folder, clips=3, seconds=1.0):
    generator = torch.Generator().manual_seed(0)
    for index in range(clips):
        for stem in ("speech", "effects", "music"):
            samples = 0.1 * torch.randn(1, int(seconds * RATE), generator=generator)
            save_wav(folder / f"{index:03d}_clip_{stem}.wav", Waveform(samples, RATE))
    return folder


def test_a_trained_demixer_loads_and_separates(tmp_path, capsys):
    out = tmp_path / "demixer.safetensors"
    assert main(["demixer", "--clips", str(write_stems(tmp_path)), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--segment", "0.5"]) == 0
    demixer = load_demixer(out)
    assert demixer.layout == "cinematic" and demixer.sample_rate == RATE and demixer.segment_length == RATE // 2
    stems = demixer.separate(Waveform(0.1 * torch.randn(1, RATE), RATE))
    assert {name: tuple(track.shape) for name, track in stems.streams.items()} == {
        "speech": (2, RATE), "effects": (2, RATE), "music": (2, RATE)}
    assert "step 2/2" in capsys.readouterr().out


def test_each_source_of_a_mix_comes_from_the_stems_and_the_mix_is_their_sum(tmp_path):
    sets = read_stem_sets([write_stems(tmp_path)], RATE, RATE // 4)
    mix, sources = random_mixes(sets, 4, RATE // 4, random.Random(0))
    torch.testing.assert_close(mix, sources.sum(dim=1))
    music = sources[0, 0, 0]
    gain = music.abs().max() / max(float(s["music"].abs().max()) for s in sets)
    assert 0.4 < gain < 2.1  # within +-6 dB of a clip's level (and a window of it)
    assert torch.equal(sources[0, 0, 0], sources[0, 0, 1])  # mono stems played on both channels


def test_too_few_clips_with_all_three_stems_are_refused(tmp_path):
    write_stems(tmp_path, clips=2)
    (tmp_path / "000_clip_music.wav").unlink()
    with pytest.raises(TrainerError) as error:
        read_stem_sets([tmp_path], RATE, RATE // 4)
    assert "found 1 clips with all three stems" in str(error.value) and "at least 3" in str(error.value)


def test_a_source_is_drawn_from_the_clips_where_it_sounds(tmp_path):
    write_stems(tmp_path)
    for index in (0, 1):  # effects sound in clip 2 only, as in the world, where most clips have none
        save_wav(tmp_path / f"{index:03d}_clip_effects.wav", Waveform(torch.zeros(1, RATE), RATE))
    sets = read_stem_sets([tmp_path], RATE, RATE // 4)
    _, sources = random_mixes(sets, 40, RATE // 4, random.Random(1))
    effects = sources[:, 1, 0]
    sounding = [row for row in effects if row.abs().max() > 0]
    assert 24 <= len(sounding) <= 40  # about 80 %; the rest are silent on purpose
    audible = sets[2]["effects"]
    windows = audible.unfold(0, RATE // 4, 1)
    for row in sounding:  # a scaled window of the one clip where effects sound
        cosine = (windows @ row) / (windows.norm(dim=1) * row.norm())
        assert float(cosine.max()) > 0.9999


def test_an_existing_out_is_refused_before_training_and_replaced_with_overwrite(tmp_path, capsys):
    clips = write_stems(tmp_path)
    out = tmp_path / "demixer.safetensors"
    out.write_bytes(b"the user's file")
    command = ["demixer", "--clips", str(clips), "--out", str(out), "--steps", "1", "--batch-size", "2", "--segment", "0.5"]
    assert main(command) == 1
    captured = capsys.readouterr()
    assert f"{out} exists; choose another --out or pass --overwrite" in captured.err and "training" not in captured.out
    assert out.read_bytes() == b"the user's file"
    assert main([*command, "--overwrite"]) == 0
    assert load_demixer(out).layout == "cinematic" and not list(tmp_path.glob(".*.tmp"))


def test_an_out_that_is_a_folder_is_refused_even_with_overwrite(tmp_path, capsys):
    assert main(["demixer", "--clips", str(tmp_path), "--out", str(tmp_path), "--overwrite"]) == 1
    assert "is a folder; --out names the file to write" in capsys.readouterr().err
