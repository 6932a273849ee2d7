"""`python -m mtv_core models fetch NAME ... --dest COMFYUI/models` and `models list`: the official models by name."""

import argparse

from ..hub.registry import CDX23_NOTE, DTYPES, GROUPS, MODELS, human_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download (and convert) models into ComfyUI's models folder",
                               description="download (and convert) models into ComfyUI's models folder; resumable, "
                                           "checked against the hub's sha256, skipped when installed")
    fetch.add_argument("names", nargs="+", metavar="NAME", help=f"one or more of {', '.join([*MODELS, *GROUPS])}")
    fetch.add_argument("--dest", required=True, help="ComfyUI's models folder (files go to its diffusion_models, vae, "
                                                     "text_encoders, audio_encoders and demucs subfolders)")
    fetch.add_argument("--dtype", choices=DTYPES, default="bf16",
                       help="MTV transformer storage: bf16, or fp8 (the blocks' Linear weights as float8_e4m3fn, the "
                            "rest bf16; written as mtv_<variant>_fp8.safetensors)")
    actions.add_parser("list", help="the names, their sources, sizes and folders")


def run(args) -> int:
    if args.action == "fetch":
        return _fetch(args)
    if args.action == "list":
        return _list()
    print("usage: python -m mtv_core models {fetch,list} ...; `python -m mtv_core models fetch --help` for more")
    return 2


def _fetch(args) -> int:
    from pathlib import Path

    from ..hub.fetch import fetch_models

    dest = Path(args.dest)
    fetch_models(args.names, lambda folder: dest / folder, dtype=args.dtype)
    return 0


def _list() -> int:
    for model in MODELS.values():
        print(f"{model.name:9} ~{human_size(model.approx_bytes):>7}  {model.source:28} -> {model.folder}/"
              f"{model.installed}  {model.what}")
    for group, members in GROUPS.items():
        print(f"{group:9} {' + '.join(members)}")
    print(CDX23_NOTE)
    return 0
