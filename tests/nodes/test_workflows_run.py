"""The shipped API workflows run end to end in-process with tiny random models, and wrong wiring
gets a node error that names the node, the input and the fix."""

import json
from pathlib import Path

import av
import pytest
import torch
from graph_runner import AUDIO_SECONDS, run_workflow

from mtv_core.errors import MTVError

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "workflows" / "api").glob("*.json"))
STEPS = 2  # the shipped graphs use 20-30 steps; 2 keep the suite fast and exercise the same path


def load(name: str) -> dict:
    graph = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
    for node in graph.values():
        if "steps" in node["inputs"]:
            node["inputs"]["steps"] = STEPS
    return graph


def probe(path: Path):
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        audio = container.streams.audio
        seconds = None
        if audio:
            samples = sum(frame.samples for frame in container.decode(audio=0))
            seconds = samples / audio[0].rate
    return frames, seconds


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_to_an_mp4(path, comfy_env):
    graph = load(path.stem)
    results = run_workflow(graph)
    saved = [Path(v) for r in results.values() if isinstance(r, dict) for v in r["ui"].get("videos", [])]
    previews = [Path(v) for r in results.values() if isinstance(r, dict) for v in r["ui"].get("audio", [])]
    demixed = any(node["class_type"] == "MTVDemixStems" for node in graph.values())
    assert len(previews) == (3 if demixed else 0) and all(p.is_file() for p in previews)
    assert len(saved) == 1 and saved[0].is_file()
    frames, seconds = probe(saved[0])
    if path.stem == "mtv_start_image_keyframe":
        assert frames == 49  # one segment, with the soundtrack's start under it
    else:
        soundtrack = demo_example_seconds() if path.stem == "mtv_demo" else AUDIO_SECONDS
        assert frames == round(soundtrack * 24)
    assert seconds is not None and abs(seconds - frames / 24) < 0.03  # AAC frames are 1024 samples


def demo_example_seconds() -> float:
    from mtv_core.audio import load_audio
    from mtv_core.demo import EXAMPLE_AUDIO

    return load_audio(EXAMPLE_AUDIO).duration


@pytest.mark.parametrize("workflow, node, name, value, message", [
    ("mtv_talking_character", "6", "speaker_ranges", "0-1.5:1, 1.5-3:2",
     "MST-ControlNet Apply: input 'mtv_model': .*is a single-speaker model.*load the multi model"),
    ("mtv_two_person_conversation", "6", "speaker_ranges", "",
     r"MST-ControlNet Apply: input 'audio_features': .*\['speech2'\] were not given.*speaker_ranges"),
    ("mtv_talking_character", "1", "model_name", "mtv_single_bf16.safetensors",
     "mtv_single_bf16.safetensors' not found in .*diffusion_models"),
], ids=["single model, second speaker", "multi model, no second speaker", "missing model file"])
def test_a_graph_that_cannot_run_names_the_node_and_input(comfy_env, workflow, node, name, value, message):
    graph = load(workflow)
    graph[node]["inputs"][name] = value
    with pytest.raises(MTVError, match=message):
        run_workflow(graph)


def test_audio_shorter_than_one_frame(comfy_env):
    graph = load("mtv_long_video")
    graph["5"]["inputs"]["audio"] = "too_short.wav"
    with pytest.raises(MTVError, match="MTV Encode wav2vec: input 'stems': the audio lasts 0.019s, shorter than one video frame"):
        run_workflow(graph)


def test_soundtrack_from_another_file(comfy_env):
    graph = load("mtv_long_video")
    graph["15"] = {"class_type": "MTVLoadAudio", "inputs": {"start_seconds": 0.0, "duration_seconds": 1.0, "audio": "mtv_example.wav"}}
    graph["10"]["inputs"]["audio"] = ["15", 0]
    with pytest.raises(MTVError, match="MTV Chain Segments: input 'audio': this audio \\(1.00s\\) is not the one the stems were made from"):
        run_workflow(graph)


def test_chain_segments_resumes_from_its_work_folder(comfy_env):
    _, _, outputs = comfy_env
    graph = load("mtv_long_video")
    first = run_workflow(graph)["10"][0]
    segments = sorted((outputs / "mtv_segments" / "long_video").rglob("segment_*.safetensors"))  # one subfolder per job
    assert len(segments) == 2
    stamps = [p.stat().st_mtime_ns for p in segments]
    second = run_workflow(graph)["10"][0]
    assert [p.stat().st_mtime_ns for p in segments] == stamps  # reused, not regenerated
    assert (first == second).all()


def test_mtv_latents_travel_on_their_own_socket_and_decode_to_the_sampled_frames(comfy_env):
    from nodes import MTVDecode, MTVSampler
    from nodes.payloads import MTVLatents

    assert MTVSampler.RETURN_TYPES[1] == "MTV_LATENT" and MTVDecode.INPUT_TYPES()["required"]["latent"][0] == "MTV_LATENT"
    graph = load("mtv_start_image_keyframe")
    frames, latents = run_workflow(graph)["10"]
    assert isinstance(latents, MTVLatents) and latents.samples.shape == (1, 13, 16, 4, 6)
    vae = run_workflow({"2": graph["2"]})["2"][0]
    decoded = MTVDecode().decode(vae, latents, 0)[0]
    assert decoded.shape == frames.shape == (49, 32, 48, 3)
    assert torch.equal(decoded, frames)


def test_lora_loader_changes_the_video_stacks_and_at_zero_leaves_it(comfy_env):
    from mtv_core.checkpoints import load_mtv_model
    from mtv_core.testing import save_random_lora

    models, _, _ = comfy_env
    graph = load("mtv_start_image_keyframe")
    model_file = models / "diffusion_models" / graph["1"]["inputs"]["model_name"]
    save_random_lora(load_mtv_model(model_file), models / "loras" / "mtv" / "style.safetensors", std=0.5)

    def render(*strengths):
        wired = json.loads(json.dumps(graph))
        source = ["1", 0]
        for index, strength in enumerate(strengths):
            wired[f"lora{index}"] = {"class_type": "MTVLoraLoader",
                                     "inputs": {"mtv_model": source, "lora_name": "mtv/style.safetensors", "strength": strength}}
            source = [f"lora{index}", 0]
        wired["10"]["inputs"]["mtv_model"] = source
        return run_workflow(wired)["10"][0]

    plain, off, full, halves = render(), render(0.0), render(1.0), render(0.5, 0.5)
    assert torch.equal(off, plain)
    assert (full - plain).abs().mean() > 0.01
    assert (halves - full).abs().max() <= 2 / 255


def test_lora_loader_refuses_a_lora_of_another_model_on_its_node(comfy_env):
    from mtv_core.testing import save_random_lora, tiny_mtv_model

    models, _, _ = comfy_env
    save_random_lora(tiny_mtv_model(seed=9, sample_height=4, sample_width=6), models / "loras" / "other.safetensors")
    graph = load("mtv_start_image_keyframe")
    graph["20"] = {"class_type": "MTVLoraLoader", "inputs": {"mtv_model": ["1", 0], "lora_name": "other.safetensors", "strength": 1.0}}
    graph["10"]["inputs"]["mtv_model"] = ["20", 0]
    with pytest.raises(MTVError, match="MTV LoRA Loader.*trained on another base model"):
        run_workflow(graph)


def test_queueing_again_with_the_loaded_models_renders_the_same_video(comfy_env):
    """ComfyUI keeps the loaders' outputs between queues: the models used once must render the same again."""
    graph = load("mtv_long_video")
    first = run_workflow(graph)
    reused = {node_id: outputs for node_id, outputs in first.items() if node_id not in ("10", "11", "12")}
    graph["10"]["inputs"]["work_folder"] = "mtv_segments/again"  # render, do not resume
    again = run_workflow(graph, reused)
    assert torch.equal(again["10"][0], first["10"][0])


def test_the_demo_workflow_samples_with_the_demos_guidance_and_older_graphs_keep_the_official(comfy_env):
    from mtv_core import demo
    from mtv_core.pipeline.guidance import GuidanceScales

    graph = {node_id: node for node_id, node in load("mtv_demo").items() if node_id not in ("10", "11", "12")}
    first = run_workflow(graph)
    assert first["9"][0].guidance == GuidanceScales(**demo.GUIDANCE) and first["9"][0].guidance.silent == 1.0
    assert first["9"][0].guidance.until is None  # every step, as the official sampler
    assert first["9"][0].guidance.speech_in_pauses is None  # speech guided alike in pauses
    for name in ("silent_guidance", "guidance_until", "speech_guidance_in_pauses", "speech_pause_keep"):  # saved before
        del graph["9"]["inputs"][name]
    loaded = {node_id: outputs for node_id, outputs in first.items() if node_id != "9"}
    older = run_workflow(graph, loaded)["9"][0].guidance
    assert older.silent is None and older.until is None and older.speech_in_pauses is None
