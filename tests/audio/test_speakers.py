import pytest
import torch
from audio_signals import tone

from mtv_core.audio import Stems, add_second_speaker, parse_speaker_ranges, split_speakers
from mtv_core.errors import AudioInputError, ConfigError


def test_parse_ranges():
    assert parse_speaker_ranges("2.5-5:2, 0-2.5:1") == [(0.0, 2.5, 1), (2.5, 5.0, 2)]
    for bad in ("0-2", "3-1:1", "0-2:3", "0-2:1, 1-3:2"):
        with pytest.raises(ConfigError):
            parse_speaker_ranges(bad)


def test_split_moves_speaker_two_ranges():
    rate = 8000
    speech = torch.ones(1, rate * 4)
    stems = Stems({"speech": speech, "effects": torch.zeros(1, rate * 4), "music": torch.zeros(1, rate * 4)}, rate)
    split = split_speakers(stems, "0-1:1, 1-3:2")
    assert torch.allclose(split.streams["speech"] + split.streams["speech2"], speech)
    assert split.streams["speech2"][0, rate + 100:3 * rate - 100].min() == 1 and split.streams["speech2"][0, :rate].max() == 0
    assert split.streams["speech"][0, 3 * rate + 100:].min() == 1


def test_second_speaker_file_is_resampled_and_aligned(write):
    rate = 16000
    stems = Stems({"speech": torch.zeros(2, rate), "effects": torch.zeros(2, rate), "music": torch.zeros(2, rate)}, rate)
    second = add_second_speaker(stems, write("b.wav", tone(200, 1.01, 44100), 44100))
    assert second.streams["speech2"].shape == (2, rate) and second.streams["speech2"].abs().max() > 0.4
    with pytest.raises(AudioInputError, match="same audio"):
        add_second_speaker(stems, write("c.wav", tone(200, 2.0, 8000), 8000))
