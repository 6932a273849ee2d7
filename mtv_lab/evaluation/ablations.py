"""Generate a world clip's video with a model, optionally with audio streams zeroed (the ablations that
show each stream controls its own thing). Zeroed features are the model's null input, exactly what
its unconditional branch sees."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from mtv_core.audio import encode_stems, stems_from_files
from mtv_core.checkpoints import load_mtv_model, load_text_encoder, load_vae, load_wav2vec2
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions
from mtv_core.pipeline.guidance import GuidanceScales
from mtv_core.pipeline.prompt_schedule import PromptSchedule
from mtv_core.pipeline.session import RenderRequest, RenderSession
from mtv_core.spec import STEMS

STREAM_ABLATIONS = {"no_audio": STEMS, **{f"no_{name}": (name,) for name in STEMS}}


@dataclass
class ModelSet:
    model: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: object
    wav2vec: object


def load_model_set(model, vae, t5, wav2vec) -> ModelSet:
    return ModelSet(load_mtv_model(model, dtype=torch.float32), load_vae(vae), load_text_encoder(t5, dtype=torch.float32),
                    load_wav2vec2(wav2vec))


def world_captions(world: Path) -> dict[str, str]:
    with open(Path(world) / "captions.csv", newline="") as handle:
        return {Path(row["clip"]).stem: row["caption"] for row in csv.DictReader(handle)}


def stem_features(models: ModelSet, stem_files: dict):
    stems = stems_from_files(**stem_files)
    return encode_stems(stems, models.wav2vec), stems.duration


def generate_clip(models: ModelSet, world: Path, clip: str, zero_streams=(), steps: int = 20, seed: int = 0,
                  guidance: GuidanceScales = GuidanceScales()) -> torch.Tensor:
    """Frames (N, H, W, 3) uint8 for a world clip, N = round(duration x 24)."""
    stem_files = {name: Path(world) / f"{clip}_{name}.wav" for name in STEMS}
    return generate_from_stems(models, stem_files, world_captions(world)[clip], zero_streams, steps, seed, guidance)


def generate_from_stems(models: ModelSet, stem_files: dict, caption: str, zero_streams=(), steps: int = 20,
                        seed: int = 0, guidance: GuidanceScales = GuidanceScales(), cache=None) -> torch.Tensor:
    """Frames (N, H, W, 3) uint8 for stem files and a caption, N = round(duration x 24)."""
    features, duration = stem_features(models, stem_files)
    return generate_from_features(models, features, duration, caption, zero_streams, steps, seed, guidance, cache)


def generate_from_features(models: ModelSet, features, duration: float, caption: str, zero_streams=(), steps: int = 20,
                           seed: int = 0, guidance: GuidanceScales = GuidanceScales(), cache=None) -> torch.Tensor:
    """Frames (N, H, W, 3) uint8 for encoded features (mtv_core.audio.AudioFeatures) and a caption."""
    schedule = PromptSchedule.single(caption)
    request = RenderRequest(models.text_encoder.encode(schedule.prompts), schedule,
                            features.scaled({name: 0.0 for name in zero_streams if name in features.per_stream}), duration)
    config = GenerationConfig(steps=steps, seed=seed, guidance=guidance, cache=cache)
    return RenderSession(models.model, models.vae, config, MemoryOptions(device="cpu")).frames(request)
