import math

import pytest
import torch

from mtv_core.audio.gate import HOLD_SECONDS, RAMP_SECONDS, WINDOW_SECONDS, SpeechGate, speech_gate
from mtv_core.errors import ConfigError

RATE = 16000


def _noise(seconds: float, dbfs: float, seed: int) -> torch.Tensor:
    """Stereo white noise with an RMS of `dbfs`."""
    samples = torch.randn(2, round(seconds * RATE), generator=torch.Generator().manual_seed(seed))
    return samples * 10 ** (dbfs / 20)


def _line(seconds: float, seed: int) -> torch.Tensor:
    """A line of 'speech': a 220 Hz tone at about -23 dBFS under a loud noise."""
    time = torch.arange(round(seconds * RATE)) / RATE
    return 0.1 * torch.sin(2 * math.pi * 220 * time).expand(2, -1) + _noise(seconds, -30, seed)


def _dialogue():
    """Leakage, a line, a short pause, a line, a long stretch of leakage, a line: and where each part starts."""
    parts = [_noise(0.6, -60, 1), _line(0.5, 2), _noise(0.1, -60, 3), _line(0.4, 4), _noise(1.2, -60, 5), _line(0.3, 6)]
    starts = [0]
    for part in parts:
        starts.append(starts[-1] + part.shape[1])
    return torch.cat(parts, dim=1), starts


def test_leakage_between_lines_is_silenced_and_the_lines_and_their_pauses_pass_unchanged():
    track, starts = _dialogue()
    gated = SpeechGate(RATE, -45.0)(track)
    ramp, hold = round(RAMP_SECONDS * RATE), round(HOLD_SECONDS * RATE)
    assert gated[:, :starts[1]].abs().max() == 0  # leakage before anyone speaks
    rise = round(0.001 * RATE)  # the level crosses the threshold within a few samples of an onset
    first_line_open = starts[1] + rise + ramp  # and the gate is fully open one ramp later
    assert torch.equal(gated[:, first_line_open:starts[4]], track[:, first_line_open:starts[4]])  # line, pause, line
    window = round(WINDOW_SECONDS * RATE)
    closed_from = starts[4] + window + hold + ramp  # the line's last sound leaves the level's window, then hold, ramp
    assert gated[:, closed_from:starts[5]].abs().max() == 0  # the long leakage between lines
    assert gated[:, starts[4]:starts[4] + hold].abs().max() > 0  # held open over the first quarter second of it
    assert torch.equal(gated[:, starts[5] + rise + ramp:], track[:, starts[5] + rise + ramp:])
    fade = gated[0, starts[1]:starts[1] + ramp] / track[0, starts[1]:starts[1] + ramp]
    assert bool((fade.diff() > -1e-6).all()) and float(fade[0]) < 0.2  # opens over the ramp, without a jump


@pytest.mark.parametrize("block", [1, 37, 441, 5000])
def test_any_split_into_blocks_gives_what_one_whole_block_gives(block):
    track, _ = _dialogue()
    whole = SpeechGate(RATE, -45.0)(track)
    gate = SpeechGate(RATE, -45.0)
    streamed = torch.cat([gate(track[:, i:i + block]) for i in range(0, track.shape[1], block)], dim=1)
    assert torch.equal(whole, streamed)


def test_a_lower_threshold_keeps_quieter_sound():
    track, starts = _dialogue()
    gated = SpeechGate(RATE, -70.0)(track)  # the -60 dBFS leakage is above it: only the very start fades in
    ramp = round(RAMP_SECONDS * RATE)
    settled = ramp + round(WINDOW_SECONDS * RATE)  # the level of the first window counts the silence before the start
    assert torch.equal(gated[:, settled:], track[:, settled:])


@pytest.mark.parametrize("level", [6.0, -300.0, float("nan"), "-45"])
def test_a_level_out_of_range_is_named(level):
    with pytest.raises(ConfigError, match=r"speech gate .* out of range; use a level in -200..0 dBFS"):
        speech_gate(RATE, level)


def test_no_level_or_the_lowest_turns_the_gate_off():
    assert speech_gate(RATE, None) is None and speech_gate(RATE, -200.0) is None
    assert isinstance(speech_gate(RATE, -199.0), SpeechGate)


@pytest.mark.parametrize("block", [None, RATE])
def test_a_faint_stretch_after_minutes_of_loud_sound_keeps_its_own_level(block):
    loud, faint = _noise(120, -6, 7), _noise(1, -125, 8)
    track = torch.cat([loud, faint], dim=1)
    gate = SpeechGate(RATE, -130.0)  # the faint stretch is above it: the gate stays open
    block = block or track.shape[1]
    gated = torch.cat([gate(track[:, i:i + block]) for i in range(0, track.shape[1], block)], dim=1)
    assert torch.equal(gated[:, loud.shape[1]:], faint)
