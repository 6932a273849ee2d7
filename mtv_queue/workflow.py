"""API-format workflows: reading them, NODE.INPUT=VALUE overrides, and the server's errors in words."""

from __future__ import annotations

import json
from pathlib import Path

from mtv_core.errors import ConfigError

from .options import SET


def load_api_workflow(path) -> dict:
    path = Path(path)
    try:
        graph = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the workflow ({error})") from error
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise ConfigError(
            f"{path} is a UI-format workflow (what you drag into ComfyUI); /prompt takes the API format. "
            "Use the file under workflows/api/, or export with 'Export (API)' in ComfyUI")
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise ConfigError(f"{path}: not an API-format workflow ({{node_id: {{class_type, inputs}}}})")
    return graph


def apply_override(graph: dict, assignment: str, declared_inputs=None) -> None:
    """NODE.INPUT=VALUE; NODE is a node id, a class_type (if unique) or a _meta title. VALUE is JSON or text.
    `declared_inputs(class_type) -> set` lets an input the graph leaves at its default be set too."""
    target, sep, raw = assignment.partition("=")
    node_key, dot, input_name = target.rpartition(".")
    if not sep or not dot or not node_key or not input_name:
        raise ConfigError(f"{SET} {assignment!r}: write NODE.INPUT=VALUE, e.g. 5.audio=my_song.wav or MTVSampler.seed=7")
    try:
        node_id, input_name = find_input(graph, target, declared_inputs)
    except ConfigError as error:
        raise ConfigError(f"{SET} {assignment!r}: {error}") from None
    graph[node_id].setdefault("inputs", {})[input_name] = override_value(raw)


def find_input(graph: dict, target: str, declared_inputs=None) -> tuple[str, str]:
    """The (node id, input name) that NODE.INPUT names, as `apply_override` finds it; the graph is not changed."""
    node_key, _, input_name = target.rpartition(".")
    if not node_key or not input_name:
        raise ConfigError(f"{target!r} is not NODE.INPUT; write e.g. 5.audio or MTVSampler.seed")
    node_id = _find_node(graph, node_key)
    known = set(graph[node_id].get("inputs") or {})
    if input_name not in known and declared_inputs is not None:
        known |= declared_inputs(graph[node_id]["class_type"])
    if input_name not in known:
        raise ConfigError(f"node {node_id} ({graph[node_id]['class_type']}) has no input {input_name!r}; it has "
                          f"{sorted(known)}")
    return node_id, input_name


def override_value(raw: str):
    """An override's value: JSON (7, 2.5, true, [1, 2]) when it parses, else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _find_node(graph: dict, key: str) -> str:
    if key in graph:
        return key
    matches = [i for i, n in graph.items() if n["class_type"] == key or (n.get("_meta") or {}).get("title") == key]
    if len(matches) == 1:
        return matches[0]
    what = "several nodes" if matches else "no node"
    raise ConfigError(f"{what} called {key!r}; use the node id ({', '.join(sorted(graph, key=_as_int))})")


def _as_int(text: str):
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def describe_refusal(answer, graph: dict) -> str:
    """The node errors of a refused /prompt, one line each."""
    if not isinstance(answer, dict):
        return f"  {str(answer)[:300]}"
    lines = []
    error = answer.get("error")
    if isinstance(error, dict):
        lines.append(f"  {error.get('message', '')} {error.get('details', '')}".rstrip())
    node_errors = answer.get("node_errors")
    for node_id, node_error in (node_errors.items() if isinstance(node_errors, dict) else ()):
        if not isinstance(node_error, dict):
            continue
        kind = node_error.get("class_type") or (graph.get(node_id) or {}).get("class_type", "?")
        for item in node_error.get("errors") or []:
            if not isinstance(item, dict):
                continue
            where = (item.get("extra_info") or {}).get("input_name")
            lines.append(f"  node {node_id} ({kind}){f', input {where!r}' if where else ''}: "
                         f"{item.get('message')} {item.get('details', '')}".rstrip())
    return "\n".join(lines) or f"  {json.dumps(answer)[:300]}"


def describe_failure(status) -> str:
    """What a failed or interrupted run's history status says, in one line."""
    messages = status.get("messages") if isinstance(status, dict) else None
    for message in messages if isinstance(messages, list) else ():
        if not (isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)):
            continue
        kind, data = message
        if kind == "execution_error":
            return (f"  node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{str(data.get('exception_message', '')).strip()}")
        if kind == "execution_interrupted":
            return f"  interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    return f"  {json.dumps(status)[:300]}"
