"""Diarization error rate (DER) of speaker ranges against true turns, both as (start, end, speaker) in seconds.

DER = (missed speech + false alarm + speaker confusion) / true speech time, on a 10 ms grid, leaving out a forgiveness
collar around every true turn's start and end; found speakers are matched to true ones in the way that errs least.
"""

import json
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np

from mtv_core.audio import Diarization, diarize_file

STEP = 0.01  # seconds per grid cell
COLLAR = 0.25


@dataclass(frozen=True)
class DiarizationError:
    """Seconds of each kind of error and of true speech, all outside the collars."""
    missed: float
    false_alarm: float
    confusion: float
    speech: float

    @property
    def rate(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.speech if self.speech else 0.0


def score_file(path) -> tuple[DiarizationError, Diarization]:
    """Diarizes an audio file and scores it against the true turns in the JSON beside it (`tools/make_two_voices.py`
    writes both: {"turns": [{"start", "end", "speaker"}, ...]})."""
    turns = json.loads(Path(path).with_suffix(".json").read_text())["turns"]
    found = diarize_file(path)
    return diarization_error([(turn["start"], turn["end"], turn["speaker"]) for turn in turns], found.ranges), found


def diarization_error(truth, found, collar: float = COLLAR) -> DiarizationError:
    """The DER of `found` ranges against `truth` turns, with the best matching of speaker numbers."""
    end = max([last for _, last, _ in [*truth, *found]], default=0.0) + collar
    cells = int(np.ceil(end / STEP))
    true_labels, found_labels = _labels(truth, cells), _labels(found, cells)
    scored = ~_near_boundaries(truth, cells, collar)
    true_labels, found_labels = true_labels[scored], found_labels[scored]
    speaking, heard = true_labels > 0, found_labels > 0
    confusion = min(np.sum(speaking & heard & (_renamed(found_labels, naming) != true_labels))
                    for naming in _namings(true_labels, found_labels))
    return DiarizationError(missed=np.sum(speaking & ~heard) * STEP, false_alarm=np.sum(~speaking & heard) * STEP,
                            confusion=confusion * STEP, speech=np.sum(speaking) * STEP)


def world_turns(truth: dict, join_gap: float = 0.5) -> list[tuple[float, float, int]]:
    """A synthetic-world clip's true turns: its speaker's stretches of sound (frames where the speech envelope is
    above zero), joined across pauses shorter than `join_gap` seconds."""
    fps, speaker = truth["fps"], truth["speaker"]
    sounding = np.flatnonzero(np.asarray(truth["speech_envelope"]) > 0)
    turns = []
    for frame in sounding:
        start, end = frame / fps, (frame + 1) / fps
        if turns and start - turns[-1][1] < join_gap:
            turns[-1] = (turns[-1][0], end, speaker)
        else:
            turns.append((start, end, speaker))
    return turns


def _labels(ranges, cells: int) -> np.ndarray:
    """The speaker number in each grid cell (0: nobody), judged at the cell's centre."""
    centres = (np.arange(cells) + 0.5) * STEP
    labels = np.zeros(cells, dtype=int)
    for start, end, speaker in ranges:
        labels[(centres >= start) & (centres < end)] = speaker
    return labels


def _near_boundaries(truth, cells: int, collar: float) -> np.ndarray:
    centres = (np.arange(cells) + 0.5) * STEP
    near = np.zeros(cells, dtype=bool)
    for edge in {edge for start, end, _ in truth for edge in (start, end)}:
        near |= np.abs(centres - edge) < collar
    return near


def _namings(true_labels: np.ndarray, found_labels: np.ndarray) -> list[dict]:
    """Every one-to-one renaming of found speakers to true ones (a found speaker left over keeps a number no true
    speaker has)."""
    found = sorted(set(found_labels[found_labels > 0].tolist()))
    true = sorted(set(true_labels[true_labels > 0].tolist()))
    spare = [-(index + 1) for index in range(len(found))]
    return [dict(zip(found, choice)) for choice in permutations(true + spare, len(found))] or [{}]


def _renamed(labels: np.ndarray, naming: dict) -> np.ndarray:
    renamed = labels.copy()
    for old, new in naming.items():
        renamed[labels == old] = new
    return renamed
