"""Writes the shipped workflows from one description each: UI format (`workflows/<name>.json`, which
ComfyUI's template browser lists) and API format (`workflows/api/<name>.json`, for `POST /prompt`).

Run `python workflows/build.py` after changing a graph or a node's inputs; tests/nodes checks that
the two formats describe the same graph and that every node and input exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mtv_core import demo  # noqa: E402
from nodes import NODE_CLASS_MAPPINGS  # noqa: E402

CORE = json.loads((HERE.parent / "nodes" / "core_node_inputs.json").read_text())
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}

AUDIO_FILE = "mtv_example.wav"
MODELS = {"single": "mtv_single.safetensors", "multi": "mtv_multi.safetensors", "accm": "mtv_accm.safetensors"}


def loaders(variant: str, demixer: bool = True) -> dict:
    graph = {
        "1": ("MTVModelLoader", {"model_name": MODELS[variant], "weight_dtype": "auto", "attention": "sdpa", "block_swap": 0,
                                 "fp8_weights": False, "offload": False}),
        "2": ("MTVVAEAndT5Loader", {"vae_name": "cogvideox5b_vae.safetensors", "t5_name": "t5-v1_1-xxl/", "t5_dtype": "auto"}),
        "3": ("MTVWav2VecLoader", {"wav2vec_name": "wav2vec2-base-960h/"}),
        "5": ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": AUDIO_FILE}),
    }
    if demixer:
        graph["4"] = ("MTVDemixerLoader", {"model_1": "cdx23_dbb4db15.safetensors", "overlap": 0.25})
        graph["6"] = ("MTVDemixStems", {"audio": ["5", 0], "demixer": ["4", 0]})
    graph["7"] = ("MTVEncodeWav2Vec", {"stems": ["6", 0], "wav2vec": ["3", 0], "fps": 24.0})
    return graph


DEMO_PROMPT = demo.example_prompt()


def text(node: str, conversation: str, scene: str, person1: str = "", person2: str = "", speaker: int = 1) -> dict:
    return {node: ("MTVTextEncode", {"t5": ["2", 1], "conversation": conversation, "scene": scene, "person1": person1,
                                     "person2": person2, "speaker": speaker})}


def apply(text_node: str, speech=1.0, effects=1.0, music=1.0, guidance=(3.5, 3.5, 3.5, 3.5)) -> dict:
    return {"9": ("MTVApply", {"mtv_model": ["1", 0], "text": [text_node, 0], "audio_features": ["7", 0],
                               "speech_strength": speech, "effects_strength": effects, "music_strength": music,
                               "text_guidance": guidance[0], "speech_guidance": guidance[1],
                               "effects_guidance": guidance[2], "music_guidance": guidance[3]})}


def chain_and_save(name: str, steps: int = 30) -> dict:
    return {
        "10": ("MTVChainSegments", {"mtv_model": ["1", 0], "vae": ["2", 0], "conditioning": ["9", 0], "seed": 42,
                                    "steps": steps, "sampler": "dpm", "audio": ["5", 0], "colour_match": True,
                                    "work_folder": f"mtv_segments/{name}"}),
        "11": ("CreateVideo", {"images": ["10", 0], "fps": 24.0, "audio": ["10", 1]}),
        "12": ("SaveVideo", {"video": ["11", 0], "filename_prefix": f"mtv/{name}", "format": "auto", "codec": "auto"}),
    }


TALK = "A woman sits at a kitchen table in warm morning light and talks to the camera."
DEMO = "demo (built-in)"


def demo_graph() -> dict:
    """The built-in demo model on its example stems: runs anywhere, on a CPU, with nothing to download."""
    stems = {"speech": "20", "effects": "21", "music": "22"}
    return {
        "1": ("MTVModelLoader", {"model_name": DEMO, "weight_dtype": "fp32", "attention": "sdpa", "block_swap": 0,
                                 "fp8_weights": False, "offload": False}),
        "2": ("MTVVAEAndT5Loader", {"vae_name": DEMO, "t5_name": DEMO, "t5_dtype": "fp32"}),
        "3": ("MTVWav2VecLoader", {"wav2vec_name": DEMO}),
        "5": ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": "mtv-demo/clip.mp4"}),
        **{node: ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": f"mtv-demo/{name}.wav"})
           for name, node in stems.items()},
        "6": ("MTVStemsFromAudio", {name: [node, 0] for name, node in stems.items()}),
        "7": ("MTVEncodeWav2Vec", {"stems": ["6", 0], "wav2vec": ["3", 0], "fps": 24.0}),
        **text("8", "custom", DEMO_PROMPT),
        **apply("8"), **chain_and_save("demo", steps=20),
    }


WORKFLOWS = {
    "mtv_demo": demo_graph(),
    "mtv_talking_character": {
        **loaders("single"),
        **text("8", "one", TALK, person1="A young woman with short dark hair wears a green sweater, centre of the frame"),
        **apply("8"), **chain_and_save("talking_character"),
    },
    "mtv_two_person_conversation": {
        **loaders("multi"),
        "6": ("MTVDemixStems", {"audio": ["5", 0], "demixer": ["4", 0], "speaker_ranges": "0-2.5:1, 2.5-5:2"}),
        **text("8", "two", "Two friends talk on a park bench in the afternoon.", person1="A man in a grey coat on the left",
               person2="A woman in a red scarf on the right", speaker=1),
        **apply("8"), **chain_and_save("two_person_conversation"),
    },
    "mtv_sound_events": {
        **loaders("accm"),
        **text("8", "none", "A wooden drum on a stage is struck by a stick; each hit makes the drum skin flash."),
        **apply("8", effects=1.2, guidance=(3.5, 3.5, 5.0, 3.5)), **chain_and_save("sound_events"),
    },
    "mtv_music_mood": {
        **loaders("single"),
        **text("8", "none", "A quiet city street at dusk, lights reflecting on wet pavement."),
        **apply("8", music=1.5, guidance=(3.5, 3.5, 3.5, 5.0)), **chain_and_save("music_mood"),
    },
    "mtv_long_video": {
        **loaders("single", demixer=False),
        "6": ("MTVStemsFromAudio", {"speech": ["5", 0]}),
        **text("8", "one", TALK, person1="A man with a beard in a blue shirt, centre of the frame"),
        **apply("8"), **chain_and_save("long_video", steps=20),
    },
    "mtv_scene_transition": {
        **loaders("single"),
        **text("8", "one", "A man talks in a sunny garden.", person1="A man in a white shirt, centre of the frame"),
        **text("13", "one", "A man talks in a dark rainy street at night.", person1="A man in a white shirt, centre of the frame"),
        "14": ("MTVSceneTransition", {"text": ["8", 0], "next_text": ["13", 0], "start_seconds": 2.0, "transition_seconds": 1.0}),
        **apply("14"), **chain_and_save("scene_transition"),
    },
    "mtv_start_image_keyframe": {
        **loaders("single"),
        **text("8", "one", TALK, person1="The woman in the picture"),
        **apply("8"),
        "13": ("LoadImage", {"image": "mtv_keyframe.png"}),
        "10": ("MTVSampler", {"mtv_model": ["1", 0], "vae": ["2", 0], "conditioning": ["9", 0], "seed": 42, "steps": 30,
                              "sampler": "dpm", "segment": 0, "start_image": ["13", 0]}),
        "11": ("CreateVideo", {"images": ["10", 0], "fps": 24.0}),
        "12": ("SaveVideo", {"video": ["11", 0], "filename_prefix": "mtv/start_image_keyframe", "format": "auto", "codec": "auto"}),
    },
}


def node_spec(class_type: str) -> dict:
    """{"inputs": [(name, type, is_widget, extra)], "outputs": [(name, type)]} for ours and the recorded core nodes."""
    if class_type in CORE:
        core = CORE[class_type]
        inputs = [(name, kind, name in core["widgets"], {}) for name, kind in core["inputs"].items()]
        return {"inputs": inputs, "outputs": [tuple(o) for o in core["outputs"]], "extra_widgets": core.get("ui_extra_widget_values", [])}
    cls = NODE_CLASS_MAPPINGS[class_type]
    declared = cls.INPUT_TYPES()
    inputs = []
    for section in ("required", "optional"):
        for name, (kind, *rest) in declared.get(section, {}).items():
            options = rest[0] if rest else {}
            is_widget = isinstance(kind, list) or kind in WIDGET_TYPES
            inputs.append((name, "COMBO" if isinstance(kind, list) else kind, is_widget, options))
    outputs = list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))
    return {"inputs": inputs, "outputs": outputs, "extra_widgets": []}


def to_api(graph: dict) -> dict:
    return {node_id: {"class_type": class_type, "inputs": inputs} for node_id, (class_type, inputs) in graph.items()}


def to_ui(graph: dict) -> dict:
    depth = _depths(graph)
    links, nodes, row_of_column = [], [], {}
    outputs_links = {}
    for node_id, (class_type, inputs) in graph.items():
        for slot, (name, kind, is_widget, _) in enumerate(node_spec(class_type)["inputs"]):
            value = inputs.get(name)
            if isinstance(value, list):
                link_id = len(links) + 1
                source, source_slot = value
                source_type = node_spec(graph[source][0])["outputs"][source_slot][1]
                links.append([link_id, int(source), source_slot, int(node_id), None, source_type])
                outputs_links.setdefault((source, source_slot), []).append(link_id)
    link_index = {(l[3], l[1], l[2]): l for l in links}
    for order, (node_id, (class_type, inputs)) in enumerate(sorted(graph.items(), key=lambda item: (depth[item[0]], int(item[0])))):
        spec = node_spec(class_type)
        sockets, widgets = [], []
        for name, kind, is_widget, options in spec["inputs"]:
            value = inputs.get(name)
            if is_widget:
                widgets.append(value if name in inputs else options.get("default"))
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                continue
            link = None
            if isinstance(value, list):
                link = link_index[(int(node_id), int(value[0]), value[1])]
                link[4] = len(sockets)
            sockets.append({"name": name, "type": kind, "link": link[0] if link else None})
        column = depth[node_id]
        row = row_of_column.get(column, 0)
        row_of_column[column] = row + 1
        nodes.append({
            "id": int(node_id), "type": class_type, "pos": [40 + 360 * column, 40 + 260 * row], "size": [320, 220],
            "flags": {}, "order": order, "mode": 0, "inputs": sockets,
            "outputs": [{"name": name, "type": kind, "links": outputs_links.get((node_id, slot), []), "slot_index": slot}
                        for slot, (name, kind) in enumerate(spec["outputs"])],
            "properties": {"Node name for S&R": class_type},
            "widgets_values": widgets + spec["extra_widgets"],
        })
    return {"last_node_id": max(int(n) for n in graph), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


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


def main() -> None:
    (HERE / "api").mkdir(exist_ok=True)
    for name, graph in WORKFLOWS.items():
        (HERE / f"{name}.json").write_text(json.dumps(to_ui(graph), indent=1) + "\n")
        (HERE / "api" / f"{name}.json").write_text(json.dumps(to_api(graph), indent=1) + "\n")
        print(f"wrote workflows/{name}.json and workflows/api/{name}.json")


if __name__ == "__main__":
    main()
