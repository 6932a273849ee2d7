"""Node declarations and shipped workflows are valid without a ComfyUI checkout."""

import hashlib
import inspect
import json
import re
import sys
import tomllib
import wave
from pathlib import Path

import pytest

import nodes
from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflows"))
from core_nodes import CORE_NODES as CORE  # noqa: E402

CORE_IDS = {"LoadAudio", "SaveAudio", "PreviewAudio", "LoadImage", "SaveImage", "VAEDecode", "CreateVideo", "SaveVideo", "KSampler"}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
FILE_CHOICES = {"model_name", "vae_name", "t5_name", "wav2vec_name", "model_1", "model_2", "model_3", "audio", "image", "clip_name"}
API_WORKFLOWS = sorted((ROOT / "workflows" / "api").glob("*.json"))


def declared_inputs(cls) -> dict:
    types = cls.INPUT_TYPES()
    return {**types.get("required", {}), **types.get("optional", {})}


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_node_declaration_is_valid(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("MTV") and node_id not in CORE_IDS
    assert cls.CATEGORY.startswith("MTV audio-sync/") and cls.DESCRIPTION  # not MTV-Crafter's "MTV"
    assert NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("MTV audio-sync · ")
    assert isinstance(cls.RETURN_TYPES, tuple) and len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    for kind in cls.RETURN_TYPES:
        assert kind in {"AUDIO", "IMAGE", "STRING"} or kind.startswith("MTV_"), kind  # never core LATENT: our layout differs
    method = getattr(cls, cls.FUNCTION)
    parameters = inspect.signature(method).parameters
    types = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            kind, options = spec[0], spec[1]
            assert isinstance(kind, list) or kind in WIDGETS or kind in {"AUDIO", "IMAGE", "AUDIO_UI", "CLIP"} or kind.startswith("MTV_"), (name, kind)
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
            assert name in parameters, f"{node_id}.{cls.FUNCTION} does not take {name}"
            if section == "optional":
                assert parameters[name].default is not inspect.Parameter.empty
    if hasattr(cls, "IS_CHANGED"):  # ComfyUI passes every input to it
        hook_parameters = inspect.signature(cls.IS_CHANGED).parameters
        accepts_all = any(p.kind == p.VAR_KEYWORD for p in hook_parameters.values())
        assert accepts_all or set(declared_inputs(cls)) <= set(hook_parameters)
    if hasattr(cls, "VALIDATE_INPUTS"):  # ComfyUI skips its own checks of every input this names, or of all with **kwargs
        hook_parameters = inspect.signature(cls.VALIDATE_INPUTS).parameters.values()
        assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in hook_parameters), node_id
        assert len(list(hook_parameters)) == 1, f"{node_id}.VALIDATE_INPUTS names several inputs: each error would be reported on all of them"


def test_importing_the_pack_is_light():
    import subprocess
    import sys

    code = "import sys, nodes; print('diffusers' in sys.modules, 'transformers' in sys.modules, 'demucs' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_missing_optional_dependency_disables_only_its_node(monkeypatch, caplog):
    import importlib
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "demucs" else real(name, *a))
    reloaded = importlib.reload(nodes)
    try:
        assert "MTVDemixerLoader" not in reloaded.NODE_CLASS_MAPPINGS
        assert "MTVDemixStems" in reloaded.NODE_CLASS_MAPPINGS
        assert "pip install demucs" in caplog.text
    finally:
        monkeypatch.undo()
        importlib.reload(nodes)


def spec_of(class_type):
    if class_type in CORE:
        core = CORE[class_type]
        return {name: (kind, name in core["optional"]) for name, kind in core["inputs"].items()}, [o[1] for o in core["outputs"]]
    cls = NODE_CLASS_MAPPINGS[class_type]
    types = cls.INPUT_TYPES()
    inputs = {name: (spec[0], section == "optional") for section in ("required", "optional") for name, spec in types.get(section, {}).items()}
    return inputs, list(cls.RETURN_TYPES)


UI_WORKFLOWS = {json.loads(p.read_text())["extra"]["mtv_api"]: p for p in (ROOT / "workflows").glob("*.json")}


def test_there_are_eight_workflows_in_both_formats():
    names = {p.stem for p in API_WORKFLOWS}
    assert len(names) == 8 and "mtv_demo" in names
    assert names == set(UI_WORKFLOWS)
    assert UI_WORKFLOWS["mtv_demo"].stem.startswith(nodes.comfy_adapter.DEMO_WORKFLOW_PREFIX)


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.stem)
def test_api_workflow_uses_only_existing_nodes_and_inputs(path):
    graph = json.loads(path.read_text())
    for node_id, node in graph.items():
        inputs, _ = spec_of(node["class_type"])
        unknown = set(node["inputs"]) - set(inputs)
        assert not unknown, f"node {node_id} ({node['class_type']}) has unknown inputs {unknown}"
        missing = {name for name, (_, optional) in inputs.items() if not optional} - set(node["inputs"])
        assert not missing, f"node {node_id} ({node['class_type']}) lacks required inputs {missing}"
        for name, value in node["inputs"].items():
            kind = inputs[name][0]
            if isinstance(value, list):
                source_id, slot = value
                assert source_id in graph, f"node {node_id}.{name} links to missing node {source_id}"
                source_outputs = spec_of(graph[source_id]["class_type"])[1]
                assert source_outputs[slot] == kind, f"node {node_id}.{name} wants {kind}, gets {source_outputs[slot]}"
            elif isinstance(kind, list) and name not in FILE_CHOICES:  # file lists depend on the user's folders
                assert value in kind, (node_id, name, value)
            elif kind == "COMBO" and name not in FILE_CHOICES:
                assert value in CORE[node["class_type"]]["combo_options"][name], (node_id, name, value)


def ui_to_api(ui: dict) -> dict:
    """Rebuild the API graph from a UI workflow using the node declarations (widget order)."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        class_type = node["type"]
        if CORE.get(class_type, {}).get("ui_only"):
            continue
        values = list(node["widgets_values"])
        inputs = {}
        if class_type in CORE:
            widget_names = CORE[class_type]["widgets"]
            controls, defaults = set(), {}
        else:
            declared = declared_inputs(NODE_CLASS_MAPPINGS[class_type])
            widget_names = [n for n, s in declared.items() if isinstance(s[0], list) or s[0] in WIDGETS]  # not the player
            controls = {n for n in widget_names if declared[n][1].get("control_after_generate")}
            defaults = {n: declared[n][1].get("default") for n in widget_names}
        for name in widget_names:
            # A workflow saved before an appended optional widget existed lacks its value: the frontend gives the default.
            inputs[name] = values.pop(0) if values else defaults[name]
            if name in controls:
                assert values.pop(0) in ("fixed", "increment", "decrement", "randomize")
        for socket in node["inputs"]:
            if socket["link"] is not None:
                link = links[socket["link"]]
                assert link[3] == node["id"]
                inputs[socket["name"]] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": class_type, "inputs": inputs}
    return api


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.stem)
def test_ui_and_api_formats_describe_the_same_graph(path):
    api = json.loads(path.read_text())
    ui = json.loads(UI_WORKFLOWS[path.stem].read_text())
    rebuilt = ui_to_api(ui)
    assert rebuilt.keys() == api.keys()
    for node_id in api:
        assert rebuilt[node_id]["class_type"] == api[node_id]["class_type"]
        for name, value in api[node_id]["inputs"].items():
            assert rebuilt[node_id]["inputs"][name] == value, (path.stem, node_id, name)


def test_step_cache_node_attaches_a_cache_without_touching_its_input():
    from mtv_core.pipeline.speed import StepCache
    from nodes import MTVStepCache
    from nodes.payloads import ModelHandle

    handle = ModelHandle(model=None, memory=None, swap=None, name="m")
    (fbc,) = MTVStepCache().apply(handle, "fbc", 0.2, 3)
    (taylor,) = MTVStepCache().apply(handle, "taylorseer", 0.2, 3)
    assert fbc.cache == StepCache("fbc", 0.2) and taylor.cache == StepCache("taylorseer", 3)
    assert handle.cache is None and fbc.name == "m"


def ui_and_api_graphs():
    for path in API_WORKFLOWS:
        yield f"{path.stem} (API)", json.loads(path.read_text())
        yield f"{UI_WORKFLOWS[path.stem].stem} (UI)", ui_to_api(json.loads(UI_WORKFLOWS[path.stem].read_text()))


@pytest.mark.parametrize("name, graph", list(ui_and_api_graphs()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_saved_video_has_its_soundtrack(name, graph):
    created = {node_id for node_id, node in graph.items() if node["class_type"] == "CreateVideo"}
    saved = [node["inputs"]["video"] for node in graph.values() if node["class_type"] == "SaveVideo"]
    assert saved and all(video[0] in created for video in saved), f"{name}: a Save Video not fed by a Create Video"
    for node_id in created:
        audio = graph[node_id]["inputs"].get("audio")
        assert isinstance(audio, list), f"{name}: Create Video {node_id} has no audio wired: its mp4 would be silent"
        assert spec_of(graph[audio[0]]["class_type"])[1][audio[1]] == "AUDIO"


def test_official_workflows_use_no_demo_model_and_name_shipped_example_inputs():
    from nodes.comfy_adapter import DEMUCS_FOLDER, EXAMPLE_INPUTS, is_demo_choice

    folders = {"model_name": "diffusion_models", "vae_name": "vae", "t5_name": "text_encoders",
               "wav2vec_name": "audio_encoders", **{f"model_{i}": DEMUCS_FOLDER for i in (1, 2, 3)}}
    for path in API_WORKFLOWS:
        if path.stem == "mtv_demo":
            continue
        for node_id, node in json.loads(path.read_text()).items():
            for name, value in node["inputs"].items():
                assert not (name in folders and is_demo_choice(folders[name], value)), (path.stem, node_id, name, value)
                if name in ("audio", "image") and isinstance(value, str):  # in the input folder itself: see Load Image
                    assert "/" not in value and (EXAMPLE_INPUTS / value).is_file(), (path.stem, node_id, value)


def test_the_example_inputs_are_small_and_fit_the_two_person_ranges():
    from PIL import Image

    from nodes.comfy_adapter import EXAMPLE_INPUTS

    assert sum(p.stat().st_size for p in EXAMPLE_INPUTS.iterdir()) < 1_000_000
    with wave.open(str(EXAMPLE_INPUTS / "mtv_example.wav")) as sound:
        seconds = sound.getnframes() / sound.getframerate()
        samples = sound.readframes(sound.getnframes())
    ranges = json.loads((ROOT / "workflows" / "api" / "mtv_two_person_conversation.json").read_text())["6"]["inputs"]["speaker_ranges"]
    assert seconds >= max(float(end) for end in re.findall(r"-([0-9.]+):", ranges))  # speaker 2 speaks till 5 s
    assert len(set(samples)) > 200  # sound, not silence
    assert Image.open(EXAMPLE_INPUTS / "mtv_keyframe.png").size == (96, 64)


def test_templates_have_short_titles_distinct_descriptions_and_distinct_thumbnails():
    uis = {path.stem: json.loads(path.read_text()) for path in UI_WORKFLOWS.values()}
    descriptions = [ui["extra"]["mtv_description"] for ui in uis.values()]
    assert len(set(descriptions)) == len(uis) and all(d and d not in uis for d in descriptions)
    thumbnails = {hashlib.sha256((ROOT / "workflows" / f"{title}.jpg").read_bytes()).hexdigest() for title in uis}
    assert len(thumbnails) == len(uis)
    assert max(len(title) for title in uis) <= 33  # frontend 1.58's card cut a title of 41 characters, not one of 33


def test_the_version_is_written_once_in_pyproject():
    import mtv_core

    assert mtv_core.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    written = [p for folder in ("mtv_core", "mtv_lab", "trainer", "nodes", "tools", "workflows")
               for p in (ROOT / folder).rglob("*.py") if re.search(r"__version__\s*=\s*['\"]", p.read_text())]
    assert written == []
