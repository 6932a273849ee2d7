"""`python -m mtv_core queue`: run an API-format workflow on a (headless) ComfyUI server."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="an API-format workflow, e.g. workflows/api/mtv_talking_character.json")
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI server address")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input (repeatable): 5.audio=song.wav, MTVChainSegments.seed=7, 8.scene='a cat'")
    parser.add_argument("--upload", action="append", default=[], metavar="FILE",
                        help="copy a file (audio, image) into the server's input folder first (repeatable)")
    parser.add_argument("--out", required=True, help="folder for the downloaded outputs (existing files are kept)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds in all (uploads, run, downloads)")
    parser.add_argument("--max-download-mb", type=float, default=8192, help="refuse an output larger than this")


def run(args) -> int:
    import math

    from ..errors import ConfigError
    from ..headless import ComfyClient, apply_override, load_api_workflow

    for name in ("timeout", "max_download_mb"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} {value} must be a positive number of "
                              f"{'seconds' if name == 'timeout' else 'megabytes'}")
    graph = load_api_workflow(args.workflow)
    client = ComfyClient(args.server, timeout=args.timeout, max_download=int(args.max_download_mb * 2**20))
    for assignment in args.set:
        apply_override(graph, assignment, client.declared_inputs)
    for path in args.upload:
        print(f"uploaded {path} as {client.upload(path)}", flush=True)
    prompt_id = client.submit(graph)
    print(f"queued {args.workflow} as {prompt_id}", flush=True)
    names = {node_id: f"{node['class_type']} (node {node_id})" for node_id, node in graph.items()}
    history = client.wait(prompt_id, report=lambda line: print(line, flush=True), node_names=names)
    for path in client.download_outputs(history, args.out):
        print(f"saved {path}")
    return 0
