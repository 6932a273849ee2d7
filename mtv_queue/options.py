"""The queue command's options: each flag written once, here. The parser declares them, and the messages that tell
a user what to change name them through these constants."""

from __future__ import annotations

import argparse

DEFAULT_SERVER = "http://127.0.0.1:8188"
SERVER = "--server"
SET = "--set"
UPLOAD = "--upload"
OUT = "--out"
TIMEOUT = "--timeout"
MAX_DOWNLOAD = "--max-download-mb"
PREVIEWS = "--previews"
JOBS = "--jobs"
ALLOW_OUTSIDE = "--allow-outside"
PER_SERVER = "--per-server"
SKIP_BAD_SERVERS = "--skip-bad-servers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="an API-format workflow, e.g. workflows/api/mtv_talking_character.json")
    parser.add_argument(SERVER, action="append", metavar="URL",
                        help=f"ComfyUI server address (default {DEFAULT_SERVER}); repeat it with {JOBS} to use several")
    parser.add_argument(SET, action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input (repeatable): 5.audio=song.wav, MTVChainSegments.seed=7, 8.scene='a cat'")
    parser.add_argument(UPLOAD, action="append", default=[], metavar="FILE",
                        help="copy a file (audio, image) into the server's input folder first (repeatable)")
    parser.add_argument(OUT, required=True, help="folder for the downloaded outputs (existing files are kept)")
    parser.add_argument(TIMEOUT, type=float, help="give up after this many seconds in all (uploads, run, downloads); "
                                                  f"with {JOBS}, per job")
    parser.add_argument(MAX_DOWNLOAD, type=float, default=8192, help="refuse an output larger than this")
    parser.add_argument(PREVIEWS, metavar="DIR",
                        help="keep the running job's latest preview image in DIR/preview.jpg, replaced at every "
                             "sampler step (the server must run with --preview-method auto)")
    batch = parser.add_argument_group(f"many jobs ({JOBS})")
    batch.add_argument(JOBS, metavar="CSV", help="one job a line: columns audio (an audio or video file in the CSV's "
                                                 "folder), prompt, seed, job (its name) and NODE.INPUT overrides; "
                                                 "outputs go to OUT/<job>/, OUT/summary.csv lists them, and a rerun "
                                                 "skips finished jobs")
    batch.add_argument(ALLOW_OUTSIDE, action="store_true",
                       help="let the jobs file's audio column name files outside its folder (../x.wav, absolute paths); "
                            "they are uploaded to the servers, so use it only for a jobs file you trust")
    batch.add_argument(PER_SERVER, type=int, default=1, metavar="N", help="jobs in flight on each server (default 1)")
    batch.add_argument(SKIP_BAD_SERVERS, action="store_true",
                       help="run on the servers that pass the checks instead of refusing the batch")
