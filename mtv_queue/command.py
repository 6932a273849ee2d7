"""The queue command: one workflow on one server, or (with --jobs) a jobs file spread over several."""

from __future__ import annotations

import math
import sys

from mtv_core.errors import ConfigError

from . import options
from .batch import Batch
from .client import ComfyClient
from .jobs_file import read_jobs
from .servers import check_servers
from .workflow import apply_override, load_api_workflow


def say(line: str) -> None:
    print(line, flush=True)


def run(args) -> int:
    check_limits(args)
    servers = args.server or [options.DEFAULT_SERVER]
    graph = load_api_workflow(args.workflow)
    with ComfyClient(servers[0], timeout=args.timeout, max_download=max_download(args)) as client:
        for assignment in args.set:
            apply_override(graph, assignment, client.declared_inputs)
        if args.jobs:
            return run_batch(args, graph, servers, client)
        refuse_batch_options(args, servers)
        return run_one(args, graph, client)


def check_limits(args) -> None:
    limits = ((options.TIMEOUT, args.timeout, "seconds"), (options.MAX_DOWNLOAD, args.max_download_mb, "megabytes"))
    for flag, value, unit in limits:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} {value} must be a positive number of {unit}")


def max_download(args) -> int:
    return int(args.max_download_mb * 2**20)


def refuse_batch_options(args, servers: list) -> None:
    if args.allow_outside:
        raise ConfigError(f"{options.ALLOW_OUTSIDE} is for the audio files of a jobs file; add {options.JOBS} FILE, "
                          "or leave it out")
    if args.per_server != 1 or args.skip_bad_servers:
        raise ConfigError(f"{options.PER_SERVER} and {options.SKIP_BAD_SERVERS} are for a batch; add {options.JOBS} "
                          "FILE, or leave them out")
    if len(servers) > 1:
        raise ConfigError(f"{len(servers)} {options.SERVER} given for one job; pass {options.JOBS} FILE to spread jobs "
                          "over them, or give one")


def run_one(args, graph: dict, client: ComfyClient) -> int:
    for path in args.upload:
        say(f"uploaded {path} as {client.upload(path)}")
    prompt_id = client.submit(graph)
    say(f"queued {args.workflow} as {prompt_id}")
    names = {node_id: f"{node['class_type']} (node {node_id})" for node_id, node in graph.items()}
    history = client.wait(prompt_id, report=say, node_names=names, previews=args.previews)
    for path in client.download_outputs(history, args.out):
        print(f"saved {path}")
    return 0


def run_batch(args, graph: dict, servers: list, client: ComfyClient) -> int:
    if args.upload:
        raise ConfigError(f"{options.UPLOAD} is for one job; with {options.JOBS} each job's audio file is uploaded to "
                          "the server that runs it")
    if args.previews:
        raise ConfigError(f"{options.PREVIEWS} is for one job; leave it out with {options.JOBS}")
    if args.per_server < 1:
        raise ConfigError(f"{options.PER_SERVER} {args.per_server} must be 1 or more")
    jobs = read_jobs(args.jobs, graph, client.declared_inputs, allow_outside=args.allow_outside)
    servers = check_servers([server.rstrip("/") for server in servers], graph, args.skip_bad_servers, report=say)
    failed = Batch(jobs, servers, args.out, args.per_server, args.timeout, max_download(args), report=say).run()
    if failed:
        print(f"error: {failed} of {len(jobs)} jobs failed (see {args.out}/summary.csv); run the same command again "
              "to retry them", file=sys.stderr)
    return 1 if failed else 0
