"""Writes the shipped workflows from one description each: UI format (`workflows/<title>.json`, which ComfyUI's
template browser lists under the file name, so the file name is the title) and API format
(`workflows/api/<name>.json`, for `POST /prompt` and `python -m mtv_core queue`); and the official workflows'
example inputs (`workflows/inputs/`: a soundtrack and a keyframe made from the built-in demo's examples), which the
pack copies into ComfyUI's input folder. A workflow whose title changed leaves no stale file:
its old UI file goes and its thumbnail takes the new title.

The UI format is laid out to be read at first sight: nodes sized to their content, grouped left to right in the
order data flows (audio, models, conditioning, sampling, output), a note saying what to change and which model
files the graph needs, and a saved view at a zoom where titles and widgets are drawn.

Run `python workflows/build.py` after changing a graph or a node's inputs; tests/nodes checks that the two formats
describe the same graph, that every node and input exists and that every saved video has its soundtrack.
"""

from __future__ import annotations

import json
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from core_nodes import CORE_NODES as CORE  # noqa: E402

from mtv_core import demo  # noqa: E402
from mtv_core.pipeline.speed import CACHES  # noqa: E402
from mtv_core.spec import FPS, GUIDANCE_ORDER, OFFICIAL_GUIDANCE, SPEECH, STEMS  # noqa: E402
from nodes import NODE_CLASS_MAPPINGS  # noqa: E402
from nodes.comfy_adapter import DEMO_CHOICE as DEMO  # noqa: E402
from nodes.comfy_adapter import EXAMPLE_INPUTS  # noqa: E402

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
AUDIO_FILE = "mtv_example.wav"  # the demo's two examples, one after the other (6 s)
KEYFRAME_FILE = "mtv_keyframe.png"  # the first frame of the demo's talking-face example
MODELS = {"single": "mtv_single.safetensors", "multi": "mtv_multi.safetensors", "accm": "mtv_accm.safetensors"}
T5XXL_FILE = "t5xxl_fp16.safetensors"  # read by core Load CLIP (type sd3): the file Flux and SD3 users already have
CORE_CLIP_T5 = "none (use a core CLIP)"
MODEL_FILES = {
    "vae": "models/vae/cogvideox5b_vae.safetensors (converted from the official vae/3d-vae.pt)",
    "t5": f"models/text_encoders/{T5XXL_FILE} (the T5 v1.1 XXL file Flux and SD3 use; or set the VAE + T5 Loader's "
          "t5_name to a t5-v1_1-xxl/ folder and connect its t5 output to Text Encode instead of the clip)",
    "wav2vec": "models/audio_encoders/wav2vec2-base-960h/",
    "demixer": "models/demucs/cdx23_dbb4db15.safetensors (MVSEP-CDX23, `python -m mtv_core convert-demixer`)",
}


@dataclass
class Workflow:
    name: str  # API file name and output prefix
    title: str  # UI file name, shown as the title in ComfyUI's template browser: short enough for its card
    description: str  # one line, what the result shows: the thumbnail's caption (the template card shows only the title)
    graph: dict  # node id -> (class_type, inputs)
    note: str  # what to change, which model files it needs


# -- graph pieces ---------------------------------------------------------------------------------------------
def loaders(variant: str, demixer: bool = True) -> dict:
    graph = {
        "1": ("MTVModelLoader", {"model_name": MODELS[variant], "weight_dtype": "auto", "attention": "sdpa", "block_swap": 0,
                                 "fp8_weights": False, "offload": False}),
        "2": ("MTVVAEAndT5Loader", {"vae_name": "cogvideox5b_vae.safetensors", "t5_name": CORE_CLIP_T5, "t5_dtype": "auto"}),
        "3": ("MTVWav2VecLoader", {"wav2vec_name": "wav2vec2-base-960h/"}),
        "19": ("CLIPLoader", {"clip_name": T5XXL_FILE, "type": "sd3", "device": "default"}),
        "5": ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": AUDIO_FILE}),
    }
    if demixer:
        graph["4"] = ("MTVDemixerLoader", {"model_1": "cdx23_dbb4db15.safetensors", "overlap": 0.25})
        graph.update(demix({"audio": ["5", 0], "demixer": ["4", 0]}))
    graph["7"] = ("MTVEncodeWav2Vec", {"stems": ["6", 0], "wav2vec": ["3", 0]})
    return graph


def demix(inputs: dict) -> dict:
    """Demix Stems, with a player on each stem so the user hears what the model will follow."""
    return {"6": ("MTVDemixStems", inputs),
            **{node: ("PreviewAudio", {"audio": ["6", slot]}) for slot, node in ((1, "16"), (2, "17"), (3, "18"))}}


def text(node: str, conversation: str, scene: str, person1: str = "", person2: str = "", speaker: int = 1,
         encoder: tuple[str, str] = ("clip", "19")) -> dict:
    """Text Encode fed by the core CLIP (the user's t5xxl file), or by ("t5", "2"): the VAE + T5 Loader's T5."""
    socket, source = encoder
    return {node: ("MTVTextEncode", {socket: [source, 0 if socket == "clip" else 1], "conversation": conversation, "scene": scene, "person1": person1,
                                     "person2": person2, "speaker": speaker})}


G = OFFICIAL_GUIDANCE


def apply(text_node: str, speech=1.0, effects=1.0, music=1.0, guidance=(G, G, G, G), silent=-1.0) -> dict:
    return {"9": ("MTVApply", {"mtv_model": ["1", 0], "text": [text_node, 0], "audio_features": ["7", 0],
                               "speech_strength": speech, "effects_strength": effects, "music_strength": music,
                               "text_guidance": guidance[0], "speech_guidance": guidance[1],
                               "effects_guidance": guidance[2], "music_guidance": guidance[3],
                               "silent_guidance": silent})}


def chain_and_save(name: str, steps: int = 30, model: str = "1") -> dict:
    return {
        "10": ("MTVChainSegments", {"mtv_model": [model, 0], "vae": ["2", 0], "conditioning": ["9", 0], "seed": 42,
                                    "steps": steps, "sampler": "dpm", "audio": ["5", 0], "colour_match": True,
                                    "work_folder": f"mtv_segments/{name}"}),
        "11": ("CreateVideo", {"images": ["10", 0], "fps": FPS, "audio": ["10", 1]}),
        "12": ("SaveVideo", {"video": ["11", 0], "filename_prefix": f"mtv/{name}", "format": "auto", "codec": "auto"}),
    }


def official_note(what: str, variant: str, demixer: bool = True, extra: str = "") -> str:
    files = [f"models/diffusion_models/{MODELS[variant]} (`python -m mtv_core convert` of the official {variant} weights)",
             MODEL_FILES["vae"], MODEL_FILES["t5"], MODEL_FILES["wav2vec"]] + ([MODEL_FILES["demixer"]] if demixer else [])
    return "\n".join([
        what, "",
        f"Change: the soundtrack in Load Audio (upload button; {AUDIO_FILE} is a short example), the scene and people "
        "in Text Encode, the seed." + (" Listen to the stems in the players before you queue." if demixer else ""),
        *([extra] if extra else []), "",
        "Needs these files:", *(f"- {f}" for f in files),
        f"Get the model, VAE and wav2vec2 with `python -m mtv_core models fetch {variant} vae wav2vec2 --dest "
        "ComfyUI/models` (or a loader's 'fetch: ...' entry where the server allows it)."
        + (" The demixer list's 'demo' entry knows only the built-in demo's synthetic sounds: do not use it on real "
           "audio." if demixer else ""), "",
        "Finished segments are kept under output/mtv_segments/; queueing again resumes where it stopped.",
    ])


# -- the workflows ----------------------------------------------------------------------------------------------
TALK_WOMAN = "A woman sits at a kitchen table in warm morning light and talks to the camera."
TALK_MAN = "A man sits at a desk in a quiet study and talks to the camera."


def demo_workflow() -> Workflow:
    """The built-in demo model on its example stems: runs anywhere, on a CPU, with nothing to download."""
    stems = dict(zip(STEMS, ("20", "21", "22")))
    graph = {
        "1": ("MTVModelLoader", {"model_name": DEMO, "weight_dtype": "fp32", "attention": "sdpa", "block_swap": 0,
                                 "fp8_weights": False, "offload": False}),
        "2": ("MTVVAEAndT5Loader", {"vae_name": DEMO, "t5_name": DEMO, "t5_dtype": "fp32"}),
        "3": ("MTVWav2VecLoader", {"wav2vec_name": DEMO}),
        "5": ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": "mtv-demo/clip.mp4"}),
        **{node: ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": f"mtv-demo/{name}.wav"})
           for name, node in stems.items()},
        "6": ("MTVStemsFromAudio", {name: [node, 0] for name, node in stems.items()}),
        "7": ("MTVEncodeWav2Vec", {"stems": ["6", 0], "wav2vec": ["3", 0]}),
        **text("8", "custom", demo.example_prompt(), encoder=("t5", "2")),  # the demo's own small T5
        **apply("8", guidance=tuple(demo.GUIDANCE[name] for name in GUIDANCE_ORDER), silent=demo.GUIDANCE["silent"]), **chain_and_save("demo", steps=20),
    }
    note = ("The built-in demo model (4.5 M parameters, trained on a synthetic world): it runs on a CPU in about a "
            "minute and needs no download.\n\nThe three players are the example's speech, effects and music stems: "
            "the mouth follows the speech, the wall's colour follows the music's mood.\n\n"
            "MST-ControlNet Apply pushes speech guidance harder than the official 3.5, effects a little softer, and "
            "does not push a silent stem (silent_guidance 1): the demo's measured best. Change the seed, strengths "
            "or scales there and queue again. For your own soundtrack use "
            "the other workflows, which need the official MTV models.")
    return Workflow("mtv_demo", "MTV Demo - no download", "Runs on a CPU in a minute with the built-in model", graph, note)


WORKFLOWS = [
    demo_workflow(),
    Workflow("mtv_talking_character", "MTV Talking character", "One person talks: the lips follow the speech", {
        **loaders("single"),
        **text("8", "one", TALK_WOMAN, person1="A young woman with short dark hair wears a green sweater, centre of the frame"),
        **apply("8"), **chain_and_save("talking_character"),
    }, official_note("One person talks: her lips follow the speech stem.", "single")),
    Workflow("mtv_two_person_conversation", "MTV Conversation (multi model)", "Two people take turns to speak", {
        **loaders("multi"),
        **demix({"audio": ["5", 0], "demixer": ["4", 0], "speaker_ranges": "0-2.5:1, 2.5-5:2"}),
        **text("8", "two", "Two friends talk on a park bench in the afternoon.", person1="A man in a grey coat on the left",
               person2="A woman in a red scarf on the right", speaker=1),
        **apply("8"), **chain_and_save("two_person_conversation"),
    }, official_note("Two people take turns: set who speaks when in Demix Stems' speaker_ranges "
                     "('start-end:speaker', in seconds).", "multi")),
    Workflow("mtv_sound_events", "MTV Sound events (accm model)", "Sound effects time what happens on screen", {
        **loaders("accm"),
        **text("8", "none", "A wooden drum on a stage is struck by a stick; each hit makes the drum skin flash."),
        **apply("8", effects=1.2, guidance=(G, G, 5.0, G)), **chain_and_save("sound_events"),
    }, official_note("No speech: the effects stem times the events (strength 1.2 and guidance 5 on effects).", "accm")),
    Workflow("mtv_music_mood", "MTV Music mood", "The music sets the colour and mood of the scene", {
        **loaders("single"),
        **text("8", "none", "A quiet city street at dusk, lights reflecting on wet pavement."),
        **apply("8", music=1.5, guidance=(G, G, G, 5.0)), **chain_and_save("music_mood"),
    }, official_note("The music stem sets the mood (strength 1.5 and guidance 5 on music).", "single")),
    Workflow("mtv_long_video", "MTV Long video - one speech track", "A long speech track, rendered in chained segments", {
        **loaders("single", demixer=False),
        "6": ("MTVStemsFromAudio", {SPEECH: ["5", 0]}),
        **text("8", "one", TALK_MAN, person1="A man with a beard in a blue shirt, centre of the frame"),
        "15": ("MTVStepCache", {"mtv_model": ["1", 0], "method": "fbc", "fbc_threshold": CACHES["fbc"].default,
                                "taylorseer_interval": int(CACHES["taylorseer"].default)}),
        **apply("8"), **chain_and_save("long_video", steps=20, model="15"),
    }, official_note("A long speech recording (no demixing): Chain Segments makes 2-second segments, each continuing "
                     "the last, colour-matched, cut to the audio's exact length.", "single", demixer=False,
                     extra="Step Cache reuses transformer work between steps (faster, slightly approximate); "
                           "bypass it (Ctrl+B) for the exact result.")),
    Workflow("mtv_scene_transition", "MTV Scene transition", "The scene changes while the person keeps talking", {
        **loaders("single"),
        **text("8", "one", "A man talks in a sunny garden.", person1="A man in a white shirt, centre of the frame"),
        **text("13", "one", "A man talks in a dark rainy street at night.", person1="A man in a white shirt, centre of the frame"),
        "14": ("MTVSceneTransition", {"text": ["8", 0], "next_text": ["13", 0], "start_seconds": 2.0, "transition_seconds": 1.0}),
        **apply("14"), **chain_and_save("scene_transition"),
    }, official_note("The scene changes at 2 s over 1 s: set the time in Scene Transition.", "single")),
    Workflow("mtv_start_image_keyframe", "MTV Start image keyframe", "A two-second clip that starts from your picture", {
        **loaders("single"),
        **text("8", "one", TALK_WOMAN, person1="The woman in the picture"),
        **apply("8"),
        "13": ("LoadImage", {"image": KEYFRAME_FILE}),
        "10": ("MTVSampler", {"mtv_model": ["1", 0], "vae": ["2", 0], "conditioning": ["9", 0], "seed": 42, "steps": 30,
                              "sampler": "dpm", "segment": 0, "start_image": ["13", 0]}),
        "11": ("CreateVideo", {"images": ["10", 0], "fps": FPS, "audio": ["5", 0]}),  # cut to the video's length
        "12": ("SaveVideo", {"video": ["11", 0], "filename_prefix": "mtv/start_image_keyframe", "format": "auto", "codec": "auto"}),
    }, official_note(f"One 2-second segment that starts from your picture (Load Image: {KEYFRAME_FILE}), with the "
                     "soundtrack's first two seconds under it.", "single",
                     extra="For another part of the soundtrack set Load Audio's start_seconds and keep the sampler's "
                           "segment at 0, so picture and sound stay together.")),
]


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


def write_example_inputs(folder: Path = EXAMPLE_INPUTS) -> None:
    """The official workflows' example inputs, made from the built-in demo's examples (small: about 200 kB):
    mtv_example.wav, the two examples' soundtracks one after the other (6 s, 16 kHz, 16-bit: speech, effects and
    music), and mtv_keyframe.png, the talking-face example's first frame."""
    def mix(name: str) -> np.ndarray:
        return sum(_samples(path) for path in demo.example_stems(name).values())

    sound = np.concatenate([mix(name) for name in demo.EXAMPLES])
    sound = sound / max(1.0, float(np.abs(sound).max()) / 0.9)
    folder.mkdir(parents=True, exist_ok=True)
    with wave.open(str(folder / AUDIO_FILE), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(EXAMPLE_RATE)
        out.writeframes((sound * 32767).round().astype("<i2").tobytes())
    with av.open(str(demo.example_audio())) as clip:
        next(clip.decode(video=0)).to_image().save(folder / KEYFRAME_FILE, optimize=True)


EXAMPLE_RATE = 16000


def _samples(path: Path) -> np.ndarray:
    """A demo stem's samples: mono at EXAMPLE_RATE, as tools/build_demo.py writes them."""
    with av.open(str(path)) as sound:
        stream = sound.streams.audio[0]
        if (stream.rate, stream.channels) != (EXAMPLE_RATE, 1):
            raise SystemExit(f"{path} has {stream.channels} channel(s) at {stream.rate} Hz, not one at {EXAMPLE_RATE}: "
                             "rebuild the demo with tools/build_demo.py")
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in sound.decode(audio=0)]).astype(np.float64)


def retire(stale: Path, titles: dict[str, str]) -> None:
    """Remove a UI file no workflow writes any more; a renamed workflow's thumbnail takes its new title."""
    renamed = titles.get(json.loads(stale.read_text()).get("extra", {}).get("mtv_api"))
    thumbnail, target = stale.with_suffix(".jpg"), HERE / f"{renamed}.jpg"
    if renamed and thumbnail.exists() and not target.exists():
        thumbnail.rename(target)
    thumbnail.unlink(missing_ok=True)
    stale.unlink()
    print(f"removed workflows/{stale.name}" + (f" (now {renamed!r})" if renamed else ""))


def main() -> None:
    (HERE / "api").mkdir(exist_ok=True)
    titles = {workflow.name: workflow.title for workflow in WORKFLOWS}
    for stale in sorted(p for p in HERE.glob("*.json") if p.stem not in titles.values()):
        retire(stale, titles)
    for stale in sorted(p for p in (HERE / "api").glob("*.json") if p.stem not in titles):
        stale.unlink()
        print(f"removed workflows/api/{stale.name}")
    for workflow in WORKFLOWS:
        (HERE / f"{workflow.title}.json").write_text(json.dumps(to_ui(workflow), indent=1) + "\n")
        (HERE / "api" / f"{workflow.name}.json").write_text(json.dumps(to_api(workflow.graph), indent=1) + "\n")
        print(f"wrote workflows/{workflow.title}.json and workflows/api/{workflow.name}.json")
    write_example_inputs()
    print(f"wrote {EXAMPLE_INPUTS.relative_to(HERE.parent)}/")


if __name__ == "__main__":
    main()
