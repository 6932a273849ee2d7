"""The two formats of a workflow: API (`POST /prompt`) and UI, laid out to be read at first sight: nodes sized to
their content, grouped left to right in the order data flows (audio, models, conditioning, sampling, output), a
note saying what to change and which model files the graph needs, and a saved view at a zoom where titles and
widgets are drawn."""

from __future__ import annotations

from core_nodes import CORE_NODES as CORE
from workflow_graphs import Workflow

from nodes import NODE_CLASS_MAPPINGS

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


# -- node declarations ------------------------------------------------------------------------------------------
def node_spec(class_type: str) -> dict:
    """{"inputs": [(name, type, is_widget, extra)], "outputs": [(name, type)], "extra_widgets": [...]}."""
    if class_type in CORE:
        core = CORE[class_type]
        inputs = [(name, kind, name in core["widgets"], {}) for name, kind in core["inputs"].items()]
        return {"inputs": inputs, "outputs": [tuple(o) for o in core["outputs"]], "extra_widgets": core.get("ui_extra_widget_values", [])}
    cls = NODE_CLASS_MAPPINGS[class_type]
    inputs = []
    for section in ("required", "optional"):
        for name, (kind, *rest) in cls.INPUT_TYPES().get(section, {}).items():
            if kind == "AUDIO_UI":
                continue  # the player: a display widget, never saved
            options = rest[0] if rest else {}
            is_widget = isinstance(kind, list) or kind in WIDGET_TYPES
            inputs.append((name, "COMBO" if isinstance(kind, list) else kind, is_widget, options))
    return {"inputs": inputs, "outputs": list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES)), "extra_widgets": []}


# Titles for nodes whose class name alone does not say what they hold; node ids mean the same in every workflow.
NODE_TITLES = {"5": "Soundtrack", "16": "Speech stem", "17": "Effects stem", "18": "Music stem",
               "20": "Speech stem", "21": "Effects stem", "22": "Music stem", "13": "Start image"}


def to_api(graph: dict) -> dict:
    return {node_id: {"class_type": class_type, "inputs": inputs,
                      **({"_meta": {"title": NODE_TITLES[node_id]}} if _titled(node_id, class_type) else {})}
            for node_id, (class_type, inputs) in graph.items()}


def _titled(node_id: str, class_type: str) -> bool:
    return node_id in NODE_TITLES and class_type in ("MTVLoadAudio", "PreviewAudio", "LoadImage")


# -- UI layout --------------------------------------------------------------------------------------------------
GROUPS = ("Audio", "Models", "Conditioning", "Sampling", "Output")
GROUP_OF = {
    "MTVLoadAudio": "Audio", "MTVDemixerLoader": "Audio", "MTVDemixStems": "Audio", "MTVStemsFromAudio": "Audio",
    "PreviewAudio": "Audio",
    "MTVModelLoader": "Models", "MTVVAEAndT5Loader": "Models", "MTVWav2VecLoader": "Models", "CLIPLoader": "Conditioning",
    "MTVEncodeWav2Vec": "Conditioning", "MTVTextEncode": "Conditioning", "MTVSceneTransition": "Conditioning",
    "MTVApply": "Conditioning",
    "LoadImage": "Sampling", "MTVStepCache": "Sampling", "MTVSampler": "Sampling", "MTVChainSegments": "Sampling", "MTVDecode": "Sampling",
    "CreateVideo": "Output", "SaveVideo": "Output",
}
GROUP_COLOURS = {"Audio": "#3f789e", "Models": "#8a8a3f", "Conditioning": "#a1309b", "Sampling": "#b06634", "Output": "#3f9e5a"}
WIDTHS = {"MTVTextEncode": 380, "MTVLoadAudio": 320, "PreviewAudio": 300, "CreateVideo": 260, "SaveVideo": 300, "Note": 360}
# Extra height over the frontend's minimum (title, sockets, one row per widget) for widgets drawn taller.
EXTRA_HEIGHT = {"MTVLoadAudio": 60, "PreviewAudio": 60, "MTVTextEncode": 90, "LoadImage": 260}
GAP, GROUP_PAD, GROUP_TITLE, TITLE_BAR = 24, 16, 40, 30
VIEW = (1750, 900)  # what a 1920 x 1080 window shows of the canvas, the frontends' bars and MARGIN left out
MARGIN = 90  # screen pixels: newer frontends draw their side and top bars over the canvas
MIN_SCALE, MAX_SCALE = 0.65, 0.9  # below about 0.6 the canvas draws boxes without text


def node_size(class_type: str, spec: dict) -> list[int]:
    widgets = sum(1 + bool(options.get("control_after_generate")) for _, _, is_widget, options in spec["inputs"] if is_widget)
    widgets += len(spec["extra_widgets"]) + (class_type == "MTVLoadAudio")  # upload buttons
    sockets = max(sum(not w for _, _, w, _ in spec["inputs"]), len(spec["outputs"]), 1)
    height = 16 + 20 * sockets + 24 * widgets + EXTRA_HEIGHT.get(class_type, 0)
    return [WIDTHS.get(class_type, 320), height]


def _links(graph: dict) -> tuple[list, dict]:
    """Link rows [id, source, slot, target, target_slot, type] and output links per (source, slot)."""
    links, outgoing = [], {}
    for node_id, (class_type, inputs) in graph.items():
        sockets = [name for name, _, is_widget, _ in node_spec(class_type)["inputs"] if not is_widget]
        for target_slot, name in enumerate(sockets):
            value = inputs.get(name)
            if isinstance(value, list):
                source, slot = value
                kind = node_spec(graph[source][0])["outputs"][slot][1]
                links.append([len(links) + 1, int(source), slot, int(node_id), target_slot, kind])
                outgoing.setdefault((source, slot), []).append(len(links))
    return links, outgoing


def _ui_node(node_id: str, class_type: str, inputs: dict, links: list, outgoing: dict, order: int) -> dict:
    spec = node_spec(class_type)
    sockets, widgets = [], []
    for name, kind, is_widget, options in spec["inputs"]:
        if is_widget:
            widgets.append(inputs[name] if name in inputs else options.get("default"))
            if options.get("control_after_generate"):
                widgets.append("fixed")
            continue
        link = next((row[0] for row in links if row[3] == int(node_id) and row[4] == len(sockets)), None)
        sockets.append({"name": name, "type": kind, "link": link})
    title = {"title": NODE_TITLES[node_id]} if _titled(node_id, class_type) else {}
    return {
        "id": int(node_id), "type": class_type, **title, "pos": [0, 0], "size": node_size(class_type, spec), "flags": {},
        "order": order, "mode": 0, "inputs": sockets,
        "outputs": [{"name": name, "type": kind, "links": outgoing.get((node_id, slot), []), "slot_index": slot}
                    for slot, (name, kind) in enumerate(spec["outputs"])],
        "properties": {"Node name for S&R": class_type}, "widgets_values": widgets + spec["extra_widgets"],
    }


def _place(nodes: list, note: dict) -> tuple[list, tuple[int, int]]:
    """One column per group, left to right, nodes stacked in each; the note on top of the (short) Models column.
    Returns the groups and the size of the whole layout."""
    x, groups, bottom = 0, [], 0
    for index, title in enumerate(GROUPS):
        members = [n for n in nodes if GROUP_OF[n["type"]] == title]
        if not members:
            continue
        width = max(n["size"][0] for n in members)
        top = 0
        if title == "Models":
            note["pos"], note["size"][0] = [x + GROUP_PAD, TITLE_BAR], width
            top = note["size"][1] + TITLE_BAR + GAP
        y = top + GROUP_TITLE
        for node in members:
            node["pos"] = [x + GROUP_PAD, y + TITLE_BAR]  # the frontend draws a node's title bar above its pos
            y += node["size"][1] + TITLE_BAR + GAP
        groups.append({"id": index + 1, "title": title, "bounding": [x, top, width + 2 * GROUP_PAD, y - top],
                       "color": GROUP_COLOURS[title], "font_size": 24, "flags": {}})
        x += width + 2 * GROUP_PAD + GAP
        bottom = max(bottom, y)
    return groups, (x, bottom)


def opening_view(size: tuple[int, int]) -> dict:
    """The saved view: the whole layout in a 1920 x 1080 window, at a zoom where the canvas still draws text."""
    scale = round(max(MIN_SCALE, min(MAX_SCALE, VIEW[0] / size[0], VIEW[1] / size[1])), 3)
    return {"scale": scale, "offset": [round(MARGIN / scale), round(MARGIN / scale)]}


def to_ui(workflow: Workflow) -> dict:
    graph = workflow.graph
    links, outgoing = _links(graph)
    depth = _depths(graph)
    ordered = sorted(graph.items(), key=lambda item: (GROUPS.index(GROUP_OF[item[1][0]]), depth[item[0]], int(item[0])))
    nodes = [_ui_node(node_id, class_type, inputs, links, outgoing, order)
             for order, (node_id, (class_type, inputs)) in enumerate(ordered)]
    note_id = max(int(n) for n in graph) + 1
    note = {"id": note_id, "type": "Note", "pos": [0, 0], "size": [WIDTHS["Note"], 40 + 15 * workflow.note.count("\n")
                                                                   + 15 * len(workflow.note) // 40],
            "flags": {}, "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "title": "Read me",
            "properties": {}, "widgets_values": [workflow.note], "color": "#432", "bgcolor": "#653"}
    groups, size = _place(nodes, note)
    return {"last_node_id": note_id, "last_link_id": len(links), "nodes": nodes + [note], "links": links,
            "groups": groups, "config": {},
            "extra": {"ds": opening_view(size), "mtv_api": workflow.name, "mtv_description": workflow.description},
            "version": 0.4}


def _depths(graph: dict) -> dict:
    depth = {}

    def visit(node_id):
        if node_id not in depth:
            sources = [v[0] for v in graph[node_id][1].values() if isinstance(v, list)]
            depth[node_id] = 1 + max((visit(s) for s in sources), default=-1)
        return depth[node_id]

    for node_id in graph:
        visit(node_id)
    return depth
