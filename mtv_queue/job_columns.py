"""What each column of a jobs file sets in the workflow: `audio`, `prompt` and `seed` find their node by its type,
`NODE.INPUT` columns name it; and what a cell's text becomes."""

from __future__ import annotations

from mtv_core.errors import ConfigError

from .workflow import find_input, override_value

NAMED_COLUMNS = ("job", "audio", "prompt", "seed")
AUDIO_LOADERS = ("MTVLoadAudio", "LoadAudio")
PROMPT_INPUTS = {"MTVTextEncode": "scene"}


def column_targets(header: list[str], workflow: dict, declared_inputs, where: str) -> dict[str, tuple[str, str]]:
    """The (node id, input) each column sets, after checking every column name; two columns may not set one
    input. `where` names the header line in messages."""
    for column in header:
        if header.count(column) > 1:
            raise ConfigError(f"{where}: the column {column!r} appears twice; keep one")
        if column not in NAMED_COLUMNS and "." not in column:
            raise ConfigError(f"{where}: unknown column {column!r}; columns are job, audio, prompt, seed and "
                              "NODE.INPUT overrides such as 10.steps or MTVChainSegments.steps")
    if "audio" not in header:
        raise ConfigError(f"{where}: no 'audio' column; add one with each job's audio file")
    targets, column_of = {}, {}
    for column in header:
        if column == "job":
            continue
        target = _column_target(column, workflow, declared_inputs, where)
        if target in column_of:
            node_id, input_name = target
            raise ConfigError(f"{where}: the columns {column_of[target]!r} and {column!r} both set node {node_id} "
                              f"({workflow[node_id]['class_type']}) input {input_name!r}; keep one of them")
        targets[column], column_of[target] = target, column
    return targets


def _column_target(column: str, workflow: dict, declared_inputs, where: str) -> tuple[str, str]:
    finders = {"audio": _audio_input, "prompt": _prompt_input, "seed": _seed_input}
    if column in finders:
        return finders[column](workflow, where)
    try:
        return find_input(workflow, column, declared_inputs)
    except ConfigError as error:
        raise ConfigError(f"{where}, column {column!r}: {error}") from None


def cell_value(column: str, cell: str, where: str):
    """What a cell sets its input to: a seed is a whole number, a prompt is text, any other cell is JSON when it
    parses (7, 2.5, true) and text when not."""
    if column == "seed":
        return _seed(cell, where)
    return cell if column == "prompt" else override_value(cell)


def _only(graph: dict, found: list[str], what: str, where: str, fix: str) -> str:
    if len(found) != 1:
        nodes = ", ".join(f"{i} ({graph[i]['class_type']})" for i in found) or "none"
        raise ConfigError(f"{where}: the workflow needs exactly one {what} for this column, it has {nodes}; {fix}")
    return found[0]


def _audio_input(graph: dict, where: str) -> tuple[str, str]:
    loaders = [i for i, node in graph.items() if node["class_type"] in AUDIO_LOADERS]
    titled = [i for i in loaders if (graph[i].get("_meta") or {}).get("title") == "Soundtrack"]
    node_id = _only(graph, loaders if len(loaders) == 1 else titled, "Load Audio node (or one titled 'Soundtrack')",
                    where, "title the soundtrack's node 'Soundtrack'")
    return node_id, "audio"


def _prompt_input(graph: dict, where: str) -> tuple[str, str]:
    encoders = [i for i, node in graph.items() if node["class_type"] in PROMPT_INPUTS]
    node_id = _only(graph, encoders, "text encode node", where, "name the input in a column instead, e.g. 8.scene")
    return node_id, PROMPT_INPUTS[graph[node_id]["class_type"]]


def _seed_input(graph: dict, where: str) -> tuple[str, str]:
    seeded = [i for i, node in graph.items() if "seed" in (node.get("inputs") or {})]
    return _only(graph, seeded, "node with a seed", where, "name the input in a column instead, e.g. 10.seed"), "seed"


def _seed(cell: str, where: str) -> int:
    try:
        seed = int(cell)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**64:
        raise ConfigError(f"{where}, column 'seed': {cell!r} is not a whole number from 0 to 2^64-1; write e.g. 7")
    return seed
