"""`python -m mtv_core queue`: run an API-format workflow on a (headless) ComfyUI server, or a jobs file on several."""

import argparse

DEFAULT_SERVER = "http://127.0.0.1:8188"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="an API-format workflow, e.g. workflows/api/mtv_talking_character.json")
    parser.add_argument("--server", action="append", metavar="URL",
                        help=f"ComfyUI server address (default {DEFAULT_SERVER}); repeat it with --jobs to use several")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input (repeatable): 5.audio=song.wav, MTVChainSegments.seed=7, 8.scene='a cat'")
    parser.add_argument("--upload", action="append", default=[], metavar="FILE",
                        help="copy a file (audio, image) into the server's input folder first (repeatable)")
    parser.add_argument("--out", required=True, help="folder for the downloaded outputs (existing files are kept)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds in all (uploads, run, downloads); "
                                                      "with --jobs, per job")
    parser.add_argument("--max-download-mb", type=float, default=8192, help="refuse an output larger than this")
    parser.add_argument("--previews", metavar="DIR",
                        help="keep the running job's latest preview image in DIR/preview.jpg, replaced at every "
                             "sampler step (the server must run with --preview-method auto)")
    batch = parser.add_argument_group("many jobs (--jobs)")
    batch.add_argument("--jobs", metavar="CSV", help="one job a line: columns audio (an audio or video file in the CSV's "
                                                     "folder), prompt, seed, job (its name) and NODE.INPUT overrides; "
                                                     "outputs go to OUT/<job>/, OUT/summary.csv lists them, and a rerun "
                                                     "skips finished jobs")
    batch.add_argument("--allow-outside", action="store_true",
                       help="let the jobs file's audio column name files outside its folder (../x.wav, absolute paths); "
                            "they are uploaded to the servers, so use it only for a jobs file you trust")
    batch.add_argument("--per-server", type=int, default=1, metavar="N", help="jobs in flight on each server (default 1)")
    batch.add_argument("--skip-bad-servers", action="store_true",
                       help="run on the servers that pass the checks instead of refusing the batch")


def run(args) -> int:
    import math

    from ..errors import ConfigError
    from ..headless import ComfyClient, apply_override, load_api_workflow

    for name in ("timeout", "max_download_mb"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} {value} must be a positive number of "
                              f"{'seconds' if name == 'timeout' else 'megabytes'}")
    servers = args.server or [DEFAULT_SERVER]
    graph = load_api_workflow(args.workflow)
    client = ComfyClient(servers[0], timeout=args.timeout, max_download=int(args.max_download_mb * 2**20))
    for assignment in args.set:
        apply_override(graph, assignment, client.declared_inputs)
    if args.jobs:
        return run_batch(args, graph, servers, client)
    if args.allow_outside:
        raise ConfigError("--allow-outside is for the audio files of a jobs file; add --jobs FILE, or leave it out")
    if args.per_server != 1 or args.skip_bad_servers:
        raise ConfigError("--per-server and --skip-bad-servers are for a batch; add --jobs FILE, or leave them out")
    if len(servers) > 1:
        raise ConfigError(f"{len(servers)} --server given for one job; pass --jobs FILE to spread jobs over them, or give one")
    for path in args.upload:
        print(f"uploaded {path} as {client.upload(path)}", flush=True)
    prompt_id = client.submit(graph)
    print(f"queued {args.workflow} as {prompt_id}", flush=True)
    names = {node_id: f"{node['class_type']} (node {node_id})" for node_id, node in graph.items()}
    history = client.wait(prompt_id, report=lambda line: print(line, flush=True), node_names=names,
                          previews=args.previews)
    for path in client.download_outputs(history, args.out):
        print(f"saved {path}")
    return 0


def run_batch(args, graph: dict, servers: list, client) -> int:
    import sys

    from ..errors import ConfigError
    from ..headless.batch import Batch, check_servers, read_jobs

    if args.upload:
        raise ConfigError("--upload is for one job; with --jobs each job's audio file is uploaded to the server that runs it")
    if args.previews:
        raise ConfigError("--previews is for one job; leave it out with --jobs")
    if args.per_server < 1:
        raise ConfigError(f"--per-server {args.per_server} must be 1 or more")
    jobs = read_jobs(args.jobs, graph, client.declared_inputs, allow_outside=args.allow_outside)
    servers = check_servers([server.rstrip("/") for server in servers], graph, args.skip_bad_servers,
                            report=lambda line: print(line, flush=True))
    failed = Batch(jobs, servers, args.out, args.per_server, args.timeout, int(args.max_download_mb * 2**20),
                   report=lambda line: print(line, flush=True)).run()
    if failed:
        print(f"error: {failed} of {len(jobs)} jobs failed (see {args.out}/summary.csv); run the same command again "
              "to retry them", file=sys.stderr)
    return 1 if failed else 0
