"""`python -m mtv_core convert-demixer --input X.th --output Y.safetensors`: convert an HTDemucs package once."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="demucs HTDemucs .th file (e.g. MVSEP-CDX23 97d170e1-dbb4db15.th)")
    parser.add_argument("--output", required=True, help="safetensors file to write")


def run(args) -> int:
    from ..audio.demix import track_mapping
    from ..checkpoints import convert_demixer

    demixer_file = convert_demixer(args.input, args.output)
    layout, _ = track_mapping(demixer_file.kwargs.get("sources", demixer_file.args[0] if demixer_file.args else []))
    print(f"wrote {args.output}: {len(demixer_file.state)} tensors, sources {demixer_file.kwargs.get('sources')}, layout {layout}")
    return 0
