"""A small in-process runner for API-format workflows: ComfyUI's execution order (dependencies first),
our nodes as they are, and stand-ins for the three core nodes the workflows use."""

from __future__ import annotations

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


CORE_STAND_INS = {"CreateVideo": CreateVideo, "SaveVideo": SaveVideo, "LoadImage": LoadImage, "PreviewAudio": PreviewAudio}


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
