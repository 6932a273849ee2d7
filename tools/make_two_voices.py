"""A conversation of two espeak-ng voices with known turns, to measure speaker diarization.

    python tools/make_two_voices.py --out talk.flac [--voices en-us en+f3] [--seconds 15] [--seed 0]

Writes the conversation (16 kHz mono, FLAC or WAV by the suffix) and `<out>.json` beside it: the true turns
({"start", "end", "speaker"}, seconds; speaker 1 speaks first), the voices and the lines spoken. Each turn is one
line said by one voice, trimmed to where its sound starts and ends; turns are separated by silent gaps. The same
voice twice (`--voices en-us en-us`) makes a one-voice control. Needs espeak-ng (`apt install espeak-ng`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE_RATE = 16000
SOUND_FLOOR = 0.01  # a sample this far below the line's peak counts as silence when trimming
LINES = (
    "Did you hear the storm last night?",
    "Yes, the thunder woke me up twice.",
    "The old tree by the river finally fell.",
    "That is a shame, it was older than the town.",
    "We could plant a new one in the spring.",
    "Good idea. I know a place that sells young oaks.",
    "Let us go there on Saturday morning.",
    "Fine, but only after breakfast.",
    "Then bring the big shovel from the shed.",
    "I will, and some gloves for both of us.",
    "Do you think it will rain again?",
    "Probably, the radio said more storms are coming.",
    "Really?",
    "Sure, why not.",
    "Hmm, maybe.",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the conversation: .flac or .wav")
    parser.add_argument("--voices", nargs=2, default=("en-us", "en+f3"), metavar=("FIRST", "SECOND"),
                        help="espeak-ng voices of speaker 1 and speaker 2 (espeak-ng --voices lists them)")
    parser.add_argument("--seconds", type=float, default=15.0, help="stop adding turns before this length")
    parser.add_argument("--gaps", type=float, nargs=2, default=(0.3, 1.0), metavar=("SHORTEST", "LONGEST"),
                        help="silence between turns, drawn in this range (seconds)")
    parser.add_argument("--speed", type=int, default=165, help="espeak-ng words per minute")
    parser.add_argument("--seed", type=int, default=0, help="picks the lines and the gaps")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed; install it (apt install espeak-ng) and run again")
    if args.out.suffix not in (".flac", ".wav"):
        raise SystemExit(f"--out {args.out} must end in .flac or .wav")
    samples, turns, spoken = conversation(args)
    write_mono(args.out, samples)
    made_by = " ".join(["python tools/make_two_voices.py", *sys.argv[1:]])
    truth = {"made_by": made_by, "sample_rate": SAMPLE_RATE, "voices": list(args.voices), "turns": turns, "lines": spoken}
    args.out.with_suffix(".json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {args.out} ({len(samples) / SAMPLE_RATE:.2f} s, {len(turns)} turns) and {args.out.with_suffix('.json')}")


def conversation(args) -> tuple[np.ndarray, list[dict], list[str]]:
    """Alternating turns until the next would not fit."""
    rng = np.random.default_rng(args.seed)
    pieces, turns, spoken = [silence(rng.uniform(*args.gaps))], [], []
    length, speaker = len(pieces[0]), 1
    for line in rng.permutation(LINES):
        voice = speak(str(line), args.voices[speaker - 1], args.speed)
        gap = silence(rng.uniform(*args.gaps))
        if (length + len(voice) + len(gap)) / SAMPLE_RATE > args.seconds:
            break
        turns.append({"start": round(length / SAMPLE_RATE, 3), "end": round((length + len(voice)) / SAMPLE_RATE, 3),
                      "speaker": speaker})
        spoken.append(str(line))
        pieces += [voice, gap]
        length += len(voice) + len(gap)
        speaker = 3 - speaker
    return np.concatenate(pieces), turns, spoken


def speak(line: str, voice: str, speed: int) -> np.ndarray:
    """One line in one voice at SAMPLE_RATE, without the silence espeak-ng puts around it."""
    from mtv_core.audio import load_audio

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "line.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), line], check=True)
        samples = load_audio(path, sample_rate=SAMPLE_RATE, mono=True).samples[0].numpy()
    loud = np.flatnonzero(np.abs(samples) > SOUND_FLOOR * np.abs(samples).max())
    return 0.5 * samples[loud[0]:loud[-1] + 1] / np.abs(samples).max()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float32)


def write_mono(path: Path, samples: np.ndarray) -> None:
    """16-bit mono: FLAC or WAV by the suffix."""
    codec = "flac" if path.suffix == ".flac" else "pcm_s16le"
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


if __name__ == "__main__":
    main()
