"""`python -m mtv_core demix INPUT --model PATH [--model PATH ...] --out DIR`: one wav per stem and a JSON report.

The input is decoded, demixed and written in streamed blocks, so memory does not grow with its length.
"""

import argparse

from ..spec import SPEECH_GATE_DBFS


def gate_level(text: str):
    """A --speech-gate-dbfs value: a number of dBFS, or 'off'."""
    return None if text.strip().lower() == "off" else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio or video file")
    parser.add_argument("--model", action="append", required=True, help="HTDemucs .safetensors (converted) or .th; repeat to average models")
    parser.add_argument("--out", required=True, help="folder for speech.wav, effects.wav, music.wav and report.json")
    parser.add_argument("--start", type=float, default=0.0, help="start offset in seconds")
    parser.add_argument("--duration", type=float, default=None, help="seconds to demix (default: to the end)")
    parser.add_argument("--overlap", type=float, default=0.25, help="segment overlap (demucs default 0.25; official MTV 0.8)")
    parser.add_argument("--silence-dbfs", type=float, default=-45.0, help="a stem whose loudest 0.5 s window is below this is reported silent")
    parser.add_argument("--speech-gate-dbfs", type=gate_level, default=SPEECH_GATE_DBFS,
                        help="silence the speech stem where it stays quieter than this (what the demixer leaks into it "
                             "between lines); 'off' keeps it as separated")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def run(args) -> int:
    import json
    import sys
    import time

    from ..audio.demix import demix_to_files
    from ..checkpoints import load_demixer
    from .checks import check_device, check_range

    check_range("--speech-gate-dbfs", args.speech_gate_dbfs, -200, 0, fix="or 'off'")
    device = check_device(args.device)
    began = time.perf_counter()
    demixer = load_demixer(args.model, overlap=args.overlap, device=device)

    def report_progress(done, total):
        print(f"\rdemix {100 * done / max(total, 1):5.1f}%", end="", file=sys.stderr, flush=True)

    report = demix_to_files(args.input, demixer, args.out, args.start, args.duration, args.silence_dbfs, report_progress,
                            args.speech_gate_dbfs)
    print(file=sys.stderr)
    elapsed = time.perf_counter() - began
    print(json.dumps(report["stems"], indent=2))
    print(f"{elapsed:.1f} s for {report['duration']:.1f} s of audio (real-time factor {elapsed / max(report['duration'], 1e-9):.3f})")
    return 0
