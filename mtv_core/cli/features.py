"""`python -m mtv_core features INPUT_OR_STEMS_DIR --wav2vec PATH --fps 24 --out FILE.safetensors`.

INPUT is a stems folder (speech / effects / music [/ speech2] audio files; the official names dialog
and effect are accepted too), or one audio/video file that is demixed first (--demixer) or used as a
single stem (--stem).
"""

import argparse

from ..spec import AUDIO_SUFFIXES, EFFECTS, FPS, MUSIC, SPEECH, SPEECH2, STEMS

STREAM_FILE_NAMES = {SPEECH: (SPEECH, "dialog", "vocals"), SPEECH2: (SPEECH2,), EFFECTS: (EFFECTS, "effect"), MUSIC: (MUSIC,)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="stems folder, or an audio/video file")
    parser.add_argument("--wav2vec", required=True, help="wav2vec2 Hugging Face folder or .safetensors file")
    parser.add_argument("--out", required=True, help="features .safetensors file to write")
    parser.add_argument("--fps", type=float, default=FPS, help=f"video frame rate of the features (MTV: {FPS:g})")
    parser.add_argument("--demixer", action="append", default=None, help="demix INPUT with this HTDemucs file first (repeat to average)")
    parser.add_argument("--stem", choices=STEMS, help="use a single INPUT file as this stem; the others are silent")
    parser.add_argument("--speaker2", help="audio file with the second speaker")
    parser.add_argument("--speaker-ranges", help="split the speech stem by time, e.g. '0-2.5:1, 2.5-5:2', or auto: find "
                        "the two speakers in it (pip install \"comfyui-mtv[speakers]\"; prints the ranges found, to correct by hand)")
    parser.add_argument("--silence-dbfs", type=float, default=-45.0, help="stems quieter than this are encoded from silence")
    parser.add_argument("--keep-silent", action="store_true", help="encode quiet stems as they are (the official code does)")
    parser.add_argument("--cache", help="folder for cached features (keyed by audio content and settings)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")


def run(args) -> int:
    import os
    import tempfile
    import time

    from ..audio.diarize import require_speaker_models
    from ..audio.features import encode_sources
    from ..audio.sources import StemSource, file_sources
    from ..audio.speakers import is_auto
    from ..checkpoints import load_wav2vec2
    from ..errors import ConfigError
    from .checks import check_device, check_range

    check_range("--fps", args.fps, FPS, FPS, fix=f"the MTV models work at {FPS:g} fps")
    check_range("--silence-dbfs", args.silence_dbfs, -200, 0)
    device = check_device(args.device)
    if args.speaker2 and args.speaker_ranges:
        raise ConfigError("give either --speaker2 or --speaker-ranges, not both.")
    if is_auto(args.speaker_ranges or ""):
        require_speaker_models()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mtv-stems-", dir=os.path.dirname(os.path.abspath(args.out))) as scratch:
        files, flags = _stem_files(args, device, scratch)
        sources, flags = file_sources(files, flags, _speaker_ranges(args.speaker_ranges or "", files))
        if args.speaker2:
            sources[SPEECH2] = StemSource.file(args.speaker2)
        encoder = load_wav2vec2(args.wav2vec, device=device)
        features = encode_sources(sources, encoder, fps=args.fps, silence_dbfs=args.silence_dbfs,
                                  encode_silent_as_silence=not args.keep_silent, out=args.out, flags=flags,
                                  cache_dir=args.cache)
    elapsed = time.perf_counter() - began
    shapes = {name: tuple(tensor.shape) for name, tensor in features.per_stream.items()}
    seconds = features.num_frames / features.fps
    print(f"wrote {os.path.abspath(args.out)}: {features.num_frames} frames at {args.fps} fps (padded {features.num_padded_frames}), {shapes}")
    for name, reason in features.flags.items():
        print(f"  {name}: {reason}")
    print(f"{elapsed:.2f} s for {seconds:.2f} s of audio (real-time factor {elapsed / seconds:.3f})")
    return 0


def _speaker_ranges(text: str, files: dict) -> str:
    """The speaker ranges to split the speech stem by: as given, or with "auto" those `diarize` finds in it, printed
    (as `generate` prints them) so that they can be corrected by hand. Without a second voice all is speaker 1's."""
    import sys

    from ..audio.diarize import diarize_file
    from ..audio.speakers import format_speaker_ranges, is_auto
    from ..errors import ConfigError

    if text and SPEECH not in files:
        raise ConfigError("--speaker-ranges needs a speech stem to split; pass a stems folder with a speech file, "
                          "--demixer MODEL, or --stem speech")
    if not is_auto(text):
        return text
    found = diarize_file(files[SPEECH])
    print(f"speakers: {found.summary()}", file=sys.stderr)
    if found.voices:
        print(f"to correct them, run again with --speaker-ranges '{found.text}' instead of --speaker-ranges auto", file=sys.stderr)
    return found.text or format_speaker_ranges([(0.0, max(found.duration, 0.01), 1)])


def _stem_files(args, device: str, scratch: str) -> tuple[dict, dict]:
    """{stream: file} for the input (a stems folder, a file demixed into `scratch`, or one file as one stem)."""
    import os

    from ..audio.demix import STEM_FILES, demix_to_files
    from ..checkpoints import load_demixer
    from ..errors import AudioInputError, ConfigError

    if os.path.isdir(args.input):
        return _find_stem_files(args.input), {}
    if not os.path.isfile(args.input):
        raise AudioInputError(f"{args.input}: no such file or folder.")
    if args.demixer:
        demixer = load_demixer(args.demixer, device=device)
        demix_to_files(args.input, demixer, scratch)
        return {name: os.path.join(scratch, file) for name, file in STEM_FILES.items()}, dict(demixer.flags)
    if args.stem:
        return {args.stem: args.input}, {}
    raise ConfigError(f"{args.input} is a single file: pass --demixer MODEL to split it, or --stem NAME to use it as one stem.")


def _find_stem_files(folder):
    import os

    from ..errors import AudioInputError

    found = {}
    for file_name in sorted(os.listdir(folder)):
        base, suffix = os.path.splitext(file_name)
        if suffix.lower() not in AUDIO_SUFFIXES:
            continue
        label = base.lower().rsplit("_", 1)[-1]
        for stream, labels in STREAM_FILE_NAMES.items():
            if label in labels or base.lower() in labels:
                if stream in found:
                    raise AudioInputError(f"{folder}: two files for the {stream} stream ({found[stream]} and {file_name}); keep one.")
                found[stream] = os.path.join(folder, file_name)
    if not found:
        raise AudioInputError(f"{folder}: no stem files found; name them speech / effects / music (.wav, .flac, ...).")
    return found
