"""A small in-process runner for API-format workflows: ComfyUI's execution order (dependencies first),
our nodes as they are, and stand-ins for the core nodes the workflows use."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import torch

from nodes import NODE_CLASS_MAPPINGS

AUDIO_SECONDS = 3.0  # the length of the example soundtrack the node tests use


class CreateVideo:
    FUNCTION = "create"

    def create(self, images, fps, audio=None):
        return ({"images": images, "fps": fps, "audio": audio},)


class SaveVideo:
    """Writes what core SaveVideo writes: an H.264 + AAC mp4 under the output folder."""

    FUNCTION = "save"
    output_dir = Path("output")

    def save(self, video, filename_prefix, format, codec):
        from mtv_core.pipeline.video import write_mp4

        frames = (video["images"].clamp(0, 1) * 255).round().to(torch.uint8)
        audio = video["audio"]
        path = self.output_dir / f"{filename_prefix}_00001_.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = None if audio is None else audio["waveform"][0]
        write_mp4(path, frames, video["fps"], samples, None if audio is None else audio["sample_rate"])
        return {"ui": {"videos": [str(path)]}}


class PreviewAudio:
    """Writes the AUDIO it receives to a wav under the output folder, as core PreviewAudio does to its temp folder."""

    FUNCTION = "preview"
    output_dir = Path("output")

    def preview(self, audio):
        from mtv_core.audio import save_wav
        from nodes.comfy_adapter import from_comfy_audio

        path = self.output_dir / "preview" / f"audio_{len(list(self.output_dir.glob('preview/*.wav'))):05d}.wav"
        save_wav(path, from_comfy_audio(audio))
        return {"ui": {"audio": [str(path)]}}


class LoadImage:
    FUNCTION = "load"
    input_dir = Path("input")

    def load(self, image):
        from PIL import Image

        pixels = np.asarray(Image.open(self.input_dir / image).convert("RGB"), dtype=np.float32) / 255.0
        return (torch.from_numpy(pixels)[None], torch.zeros(1, *pixels.shape[:2]))


class StandInCoreClip:
    """core's CLIP interface over our demo T5: tokenize() as core's SD3 tokenizer does it (weights from parentheses,
    </s>, padding to 77), encode_from_tokens() reading the 't5xxl' ids with no attention mask, as core's T5 does."""

    def __init__(self, t5, masks_padding=False):
        part = types.SimpleNamespace(embedding_key="t5xxl", tokenizer=t5.tokenizer)
        self.tokenizer = types.SimpleNamespace(clip_l=types.SimpleNamespace(embedding_key="clip_l"), t5xxl=part)
        self.encoder, self.masks_padding, self.seen = t5.encoder, masks_padding, []

    def tokenize(self, text):
        ids = self.tokenizer.t5xxl.tokenizer(text)["input_ids"]
        return {"l": [[(49406, 1.0), (49407, 1.0)]], "t5xxl": [[(i, 1.0) for i in ids + [0] * (77 - len(ids))]]}

    @torch.no_grad()
    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        assert tokens["l"] == [] and all(weight == 1.0 for _, weight in tokens["t5xxl"][0])
        ids = torch.tensor([[token for token, _ in tokens["t5xxl"][0]]])
        self.seen.append(ids)
        out = {"cond": self.encoder(input_ids=ids).last_hidden_state, "pooled_output": None}
        return {**out, "attention_mask": torch.ones_like(ids)} if self.masks_padding else out


class CLIPLoader:
    """Core Load CLIP for the workflows' t5xxl file: the tiny T5 folder of the test models behind core's CLIP
    interface (the real one is checked in tests/nodes/test_comfy_real.py)."""

    FUNCTION = "load"

    def load(self, clip_name, type, device="default"):
        from mtv_core.checkpoints import load_text_encoder
        from nodes.folders import folder_roots

        assert clip_name.startswith("t5xxl") and type == "sd3", (clip_name, type)
        return (StandInCoreClip(load_text_encoder(folder_roots("text_encoders")[0] / "t5-v1_1-xxl", dtype=torch.float32)),)


CORE_STAND_INS = {"CLIPLoader": CLIPLoader, "CreateVideo": CreateVideo, "SaveVideo": SaveVideo, "LoadImage": LoadImage, "PreviewAudio": PreviewAudio}


def run_workflow(graph: dict, cached: dict | None = None) -> dict:
    """Executes every node once, dependencies first; returns node id -> outputs. `cached` holds outputs of an
    earlier run to reuse, as ComfyUI reuses a node's outputs while its inputs stay the same."""
    results: dict = dict(cached or {})

    def execute(node_id: str):
        if node_id in results:
            return results[node_id]
        node = graph[node_id]
        cls = NODE_CLASS_MAPPINGS.get(node["class_type"]) or CORE_STAND_INS[node["class_type"]]
        kwargs = {name: execute(value[0])[value[1]] if isinstance(value, list) else value
                  for name, value in node["inputs"].items()}
        results[node_id] = getattr(cls(), cls.FUNCTION)(**kwargs)
        return results[node_id]

    for node_id in graph:
        execute(node_id)
    return results
