"""Generate a world clip's video with a model, optionally with audio streams zeroed (the ablations that
show each stream controls its own thing). Zeroed features are the model's null input, exactly what
its unconditional branch sees."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import torch

STREAM_ABLATIONS = {"no_audio": ("speech", "effects", "music"), "no_speech": ("speech",), "no_effects": ("effects",),
                    "no_music": ("music",)}


@dataclass
class ModelSet:
    model: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: object
    wav2vec: object


def load_model_set(model, vae, t5, wav2vec) -> ModelSet:
    from ..audio import load_wav2vec2
    from ..checkpoints import load_mtv_model
    from ..pipeline.text import load_text_encoder
    from ..pipeline.vae import load_vae

    return ModelSet(load_mtv_model(model, dtype=torch.float32), load_vae(vae), load_text_encoder(t5, dtype=torch.float32),
                    load_wav2vec2(wav2vec))


def world_captions(world: Path) -> dict[str, str]:
    with open(Path(world) / "captions.csv", newline="") as handle:
        return {Path(row["clip"]).stem: row["caption"] for row in csv.DictReader(handle)}


def stem_features(models: ModelSet, stem_files: dict):
    from ..audio import encode_stems, stems_from_files

    stems = stems_from_files(**stem_files)
    return encode_stems(stems, models.wav2vec, fps=24), stems.duration


def generate_clip(models: ModelSet, world: Path, clip: str, zero_streams=(), steps: int = 20, seed: int = 0,
                  guidance: float = 3.5) -> torch.Tensor:
    """Frames (N, H, W, 3) uint8 for a world clip, N = round(duration x 24)."""
    stem_files = {name: Path(world) / f"{clip}_{name}.wav" for name in ("speech", "effects", "music")}
    return generate_from_stems(models, stem_files, world_captions(world)[clip], zero_streams, steps, seed, guidance)


def generate_from_stems(models: ModelSet, stem_files: dict, caption: str, zero_streams=(), steps: int = 20,
                        seed: int = 0, guidance: float = 3.5) -> torch.Tensor:
    """Frames (N, H, W, 3) uint8 for stem files and a caption, N = round(duration x 24)."""
    from ..pipeline.generate import GenerationConfig, MemoryOptions, SegmentGenerator, generate_frames
    from ..pipeline.guidance import GuidanceScales
    from ..pipeline.prompt_schedule import PromptSchedule
    from ..pipeline.segments import output_frame_count, plan_segments

    features, duration = stem_features(models, stem_files)
    features = replace(features, per_stream={name: value * 0 if name in zero_streams else value
                                             for name, value in features.per_stream.items()})
    schedule = PromptSchedule.single(caption)
    text = models.text_encoder.encode(schedule.prompts)
    config = GenerationConfig(steps=steps, seed=seed, guidance=GuidanceScales.joint(guidance))
    generator = SegmentGenerator(models.model, models.vae, config, MemoryOptions(device="cpu"))
    return generate_frames(generator, text, schedule, features, plan_segments(output_frame_count(duration, 24.0)))
