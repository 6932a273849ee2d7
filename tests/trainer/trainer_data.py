"""Small prepared datasets made of cached tensors (no VAE, T5 or wav2vec2 needed), shared by the trainer tests."""

import contextlib
import pickle
import sys
from pathlib import Path

import torch

from mtv_core.audio import AudioFeatures
from mtv_core.models import mtv_config
from trainer import train
from trainer.dataset import ClipRecord, save_tensors, text_cache_name, write_manifest

REPO = Path(__file__).resolve().parents[2]
TINY = mtv_config("tiny-single")
SUBSETS_BY_CLIP = {
    "face": ["basic_face", "single_character", "visual_mood"],
    "duo": ["multi_character", "sound_event"],
    "street": ["sound_event", "visual_mood"],
}


def write_tiny_dataset(root: Path, clips: dict = SUBSETS_BY_CLIP, seed: int = 0) -> Path:
    """One source per clip; latents (13, 16, 8, 12), text (226, 32), features 12 layers x 32 wide."""
    generator = torch.Generator().manual_seed(seed)
    records = []
    for name, subsets in clips.items():
        caption = f"One person conversation. Scene Description: {name}."
        features = AudioFeatures({s: torch.randn(97, 12, 32, generator=generator) for s in ("speech", "effects", "music")}, 90, 24.0)
        features.save(root / "features" / f"{name}.safetensors")
        save_tensors(root / "latents" / f"{name}.safetensors", {"latents": torch.randn(13, 16, 8, 12, generator=generator)})
        save_tensors(root / text_cache_name(caption), {"text": torch.randn(226, TINY["text_embed_dim"], generator=generator)})
        records.append(ClipRecord(
            id=name, source=f"/clips/{name}.mp4", source_hash="0" * 16, start_frame=3, fps=24.0, caption=caption,
            persons=2 if "multi_character" in subsets else 1, subsets=subsets, features=f"features/{name}.safetensors",
            latents=f"latents/{name}.safetensors", text=text_cache_name(caption), scene=(0, 90),
        ))
    write_manifest(root, records)
    return root


def trainer_command(*args) -> list[str]:
    return [sys.executable, "-m", "trainer", *map(str, args)]


class Planted:
    """Unpickling it creates the marker file: proof that a load ran code from the folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(path: Path, marker: Path, zipped: bool) -> None:
    if zipped:
        torch.save({"state": Planted(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Planted(marker), protocol=2))


@contextlib.contextmanager
def killed_at_step(step: int):
    """Training stops as a Ctrl-C would when it fetches the batch of `step` (1-based), after step - 1 finished."""
    batches, collate = 0, train.collate

    def fetch(items):
        nonlocal batches
        batches += 1
        if batches == step:
            raise KeyboardInterrupt("killed")
        return collate(items)

    train.collate = fetch
    try:
        yield
    finally:
        train.collate = collate
