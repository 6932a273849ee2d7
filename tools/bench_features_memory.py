"""Peak memory of `python -m mtv_core features` against the soundtrack's length, with a wav2vec2 of the real
width (wav2vec2-base: 768 wide, 12 layers, 512-channel convolutions) and random weights.

    python tools/bench_features_memory.py --minutes 1 10 120 --work /tmp/features-bench

Writes a noise FLAC of each length (noise, so every pass is really computed) and prints, per length, the peak
resident memory of the features run, its wall time and the output's size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtv_core.spec import SPEECH  # noqa: E402

RATE = 16000
MEASURE = ("import resource, sys; from mtv_core.cli import main; code = main(sys.argv[1:]); "
           "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def write_noise(path: Path, minutes: float) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        for start in range(0, int(minutes * 60 * RATE), RATE * 30):
            block = (rng.standard_normal((1, RATE * 30)) * 3000).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_base_wav2vec2(folder: Path) -> None:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)  # the defaults are wav2vec2-base's shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 120])
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / "wav2vec2-base-random"
    if not (model / "config.json").is_file():
        write_base_wav2vec2(model)
    print("| audio | peak RSS | wall time | features file |\n|---|---|---|---|", flush=True)
    for minutes in args.minutes:
        audio = args.work / f"noise-{minutes:g}min.flac"
        if not audio.is_file():
            write_noise(audio, minutes)
        out = args.work / f"features-{minutes:g}min.safetensors"
        began = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", MEASURE, "features", str(audio), "--stem", SPEECH, "--wav2vec",
                                 str(model), "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
        if result.returncode:
            sys.exit(result.stderr[-2000:])
        peak = int(result.stdout.split("PEAK_KIB")[-1]) / 2**20
        print(f"| {minutes:g} min | {peak:.2f} GiB | {time.perf_counter() - began:.0f} s | {out.stat().st_size / 2**30:.2f} GiB |", flush=True)


if __name__ == "__main__":
    main()
