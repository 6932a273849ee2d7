"""Before a batch: which servers can run the workflow (reachable, with its nodes and its loaders' model files)."""

from __future__ import annotations

from mtv_core.errors import GenerationError

from .client import ComfyClient
from .options import SKIP_BAD_SERVERS

CHECK_SECONDS = 30.0


def check_servers(servers: list[str], graph: dict, skip_bad: bool = False, report=print) -> list[str]:
    """The servers that can run the workflow. One that cannot (unreachable, without the nodes or the model files)
    refuses the batch, or with `skip_bad` is left out, as long as one server remains."""
    problems = {server: server_problem(server, graph) for server in servers}
    bad = {server: problem for server, problem in problems.items() if problem}
    if bad and (not skip_bad or len(bad) == len(servers)):
        hint = "" if len(bad) == len(servers) else f"\n({SKIP_BAD_SERVERS} runs the jobs on the others)"
        raise GenerationError("\n".join(bad.values()) + hint)
    for problem in bad.values():
        report(f"skipping a server: {problem}")
    return [server for server in servers if server not in bad]


def server_problem(server: str, graph: dict) -> str:
    """Why `server` cannot run `graph`, in one line, or "" when it can."""
    try:
        with ComfyClient(server, timeout=CHECK_SECONDS) as client:
            info = client.object_info()
    except GenerationError as error:
        return str(error)
    missing = sorted({node["class_type"] for node in graph.values()} - set(info))
    if missing:
        return (f"{server} has no node {', '.join(missing)}; install the MTV pack (custom_nodes/comfyui-mtv) or update "
                "ComfyUI there, then restart it")
    absent = [f"{value!r} (node {node_id} {node['class_type']}, input {name})"
              for node_id, node in graph.items() if "Loader" in node["class_type"]
              for name, value in (node.get("inputs") or {}).items()
              if isinstance(value, str) and value not in choices(info, node["class_type"], name, value)]
    if absent:
        return f"{server} has no model file {', '.join(absent)}; put the files in its model folders, then restart it"
    return ""


def choices(info: dict, class_type: str, name: str, value: str) -> list:
    """The choice list /object_info declares for an input (old `[[...], {...}]` or new `["COMBO", {"options"}]`
    form); `[value]` when the input has no list, so only lists are checked."""
    node = info.get(class_type)
    inputs = node.get("input") if isinstance(node, dict) else None
    sections = inputs.values() if isinstance(inputs, dict) else ()
    spec = next((section[name] for section in sections if isinstance(section, dict) and name in section), None)
    if not isinstance(spec, list) or not spec:
        return [value]
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        return spec[1]["options"]
    return [value]
