"""`python -m mtv_core demix INPUT --model PATH [--model PATH ...] --out DIR`: one wav per stem and a JSON report.

The input is decoded, demixed and written in streamed blocks, so memory does not grow with its length.
"""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="audio or video file")
    parser.add_argument("--model", action="append", required=True, help="HTDemucs .safetensors (converted) or .th; repeat to average models")
    parser.add_argument("--out", required=True, help="folder for speech.wav, effects.wav, music.wav and report.json")
    parser.add_argument("--start", type=float, default=0.0, help="start offset in seconds")
    parser.add_argument("--duration", type=float, default=None, help="seconds to demix (default: to the end)")
    parser.add_argument("--overlap", type=float, default=0.25, help="segment overlap (demucs default 0.25; official MTV 0.8)")
    parser.add_argument("--silence-dbfs", type=float, default=-45.0, help="a stem whose loudest 0.5 s window is below this is reported silent")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def run(args) -> int:
    import json
    import os
    import sys
    import time

    from ..audio.demix import load_demixer
    from ..audio.io import WavWriter, downmix_matrix, iter_audio_blocks, probe_audio, write_text_atomically
    from ..audio.levels import LevelMeter
    from ..audio.resample import StreamResampler
    from ..audio.stems import ContentHasher

    began = time.perf_counter()
    demixer = load_demixer(args.model, overlap=args.overlap, device=args.device)
    info = probe_audio(args.input)
    hasher = ContentHasher(info.sample_rate)
    resampler = StreamResampler(info.sample_rate, demixer.sample_rate)
    matrix = downmix_matrix(info.channel_names) if info.num_channels > 2 else None
    expected = round(((args.duration or max(0.0, (info.declared_duration or 0.0) - args.start))) * demixer.sample_rate)

    def stereo_blocks():
        for block in iter_audio_blocks(args.input, args.start, args.duration):
            hasher.update(block)
            stereo = block.expand(2, -1) if block.shape[0] == 1 else block if matrix is None else matrix @ block
            yield resampler.push(stereo)
        yield resampler.flush().reshape(2, -1)

    def report_progress(done, total):
        print(f"\rdemix {100 * done / max(total, 1):5.1f}%", end="", file=sys.stderr, flush=True)

    names = ("speech", "effects", "music")
    writers = {name: WavWriter(os.path.join(args.out, f"{name}.wav"), demixer.sample_rate, 2) for name in names}
    meters = {name: LevelMeter(demixer.sample_rate, args.silence_dbfs) for name in names}
    try:
        for stem_block in demixer.separate_stream(stereo_blocks(), expected, report_progress):
            for name in names:
                writers[name].write(stem_block[name])
                meters[name].update(stem_block[name])
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    print(file=sys.stderr)
    num_samples = writers["speech"].num_frames
    elapsed = time.perf_counter() - began
    report = {
        "input": os.path.abspath(args.input),
        "models": [os.path.abspath(path) for path in args.model],
        "layout": demixer.layout,
        "source_id": hasher.hexdigest(),
        "duration": num_samples / demixer.sample_rate,
        "sample_rate": demixer.sample_rate,
        "seconds": round(elapsed, 3),
        "real_time_factor": round(elapsed / max(num_samples / demixer.sample_rate, 1e-9), 4),
        "stems": {name: dict(meters[name].report().as_dict(), file=f"{name}.wav", flag=demixer.flags.get(name)) for name in names},
    }
    write_text_atomically(os.path.join(args.out, "report.json"), json.dumps(report, indent=2))
    print(json.dumps(report["stems"], indent=2))
    return 0
