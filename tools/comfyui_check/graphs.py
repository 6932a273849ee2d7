"""Edits of the shipped API graphs the check queues: the demo's models, a LoRA, a work folder of its own."""

from __future__ import annotations

import json


def with_demo_models(graph: dict, info: dict, steps: int = 10) -> dict:
    """The graph with every loader on the built-in demo's entry (as /object_info lists it) and fewer steps."""
    graph = json.loads(json.dumps(graph))
    for node in graph.values():
        spec = info.get(node["class_type"], {}).get("input", {}).get("required", {})
        for name in node["inputs"]:
            options = spec.get(name, [None])[0]
            demo = [o for o in options if str(o).startswith("demo (built-in")] if isinstance(options, list) else []
            if demo and "Loader" in node["class_type"]:
                node["inputs"][name] = demo[0]
        if "steps" in node["inputs"]:
            node["inputs"]["steps"] = steps
    return with_demo_text_encoder(graph)


def with_demo_text_encoder(graph: dict) -> dict:
    """Text Encode fed by the demo's own T5 (the VAE + T5 Loader's second output) instead of a core CLIP of a t5xxl
    file: the demo model reads the demo T5's embeddings."""
    loader = next(i for i, node in graph.items() if node["class_type"] == "MTVVAEAndT5Loader")
    for node_id, node in list(graph.items()):
        if node["class_type"] == "CLIPLoader":
            del graph[node_id]
        elif node["class_type"] == "MTVTextEncode" and node["inputs"].pop("clip", None) is not None:
            node["inputs"]["t5"] = [loader, 1]
    return graph


def with_lora(graph: dict, name: str, strength: float) -> dict:
    """The graph with an MTV LoRA Loader between the model loader and everything that took its model."""
    wired = json.loads(json.dumps(graph))
    loader = next(node_id for node_id, node in wired.items() if node["class_type"] == "MTVModelLoader")
    for node in wired.values():
        for key, value in node["inputs"].items():
            if value == [loader, 0]:
                node["inputs"][key] = ["lora", 0]
    wired["lora"] = {"class_type": "MTVLoraLoader", "inputs": {"mtv_model": [loader, 0], "lora_name": name, "strength": strength}}
    return wired


def in_own_folder(graph: dict, folder: str) -> dict:
    """The graph with Chain Segments working in `folder`, so it renders instead of resuming earlier segments."""
    graph = json.loads(json.dumps(graph))
    for node in graph.values():
        if node["class_type"] == "MTVChainSegments":
            node["inputs"]["work_folder"] = f"mtv_segments/{folder}"
    return graph
