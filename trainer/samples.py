"""Optional sample videos while training (`--sample-every K --sample-vae VAE`): the model as it is at
step K denoises the first clip of the stage's dataset from its cached text and audio features."""

from __future__ import annotations

from pathlib import Path

import torch

from mtv_core.checkpoints import load_vae
from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions
from mtv_core.pipeline.session import RenderSession
from mtv_core.pipeline.video import write_mp4
from mtv_core.spec import FPS

from .errors import TrainerError


class SampleWriter:
    def __init__(self, vae_path: Path | None, every: int, steps: int, folder: Path):
        if every and vae_path is None:
            raise TrainerError("--sample-every needs --sample-vae (the VAE the dataset's latents were made with) to decode samples")
        self.every, self.steps, self.folder = every, steps, Path(folder)
        self.vae = None if not every else load_vae(vae_path)

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    @torch.no_grad()
    def write(self, model, item: dict, step: int, device, save: bool = True) -> Path | None:
        was_training = model.training
        model.eval()
        try:
            session = RenderSession(model, self.vae, GenerationConfig(steps=self.steps, seed=0), MemoryOptions(device=str(device)))
            frames, _ = session.segment_from_windows(item["text"][None], {name: f[None] for name, f in item["features"].items()})
        finally:
            model.train(was_training)
        if not save:
            return None
        path = self.folder / f"step-{step:06d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, frames, FPS)
        return path
