"""`python -m mtv_core queue`: run an API-format workflow on a (headless) ComfyUI server."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="an API-format workflow, e.g. workflows/api/mtv_talking_character.json")
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="ComfyUI server address")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input (repeatable): 5.audio=song.wav, MTVChainSegments.seed=7, 8.scene='a cat'")
    parser.add_argument("--upload", action="append", default=[], metavar="FILE",
                        help="copy a file (audio, image) into the server's input folder first (repeatable)")
    parser.add_argument("--out", required=True, help="folder for the downloaded outputs")
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds")


def run(args) -> int:
    from ..headless import ComfyClient, apply_override, load_api_workflow

    graph = load_api_workflow(args.workflow)
    client = ComfyClient(args.server)
    for assignment in args.set:
        apply_override(graph, assignment, client.declared_inputs)
    for path in args.upload:
        print(f"uploaded {path} as {client.upload(path)}")
    prompt_id = client.submit(graph)
    print(f"queued {args.workflow} as {prompt_id}")
    history = client.wait(prompt_id, limit=args.timeout)
    for path in client.download_outputs(history, args.out):
        print(f"saved {path}")
    return 0
