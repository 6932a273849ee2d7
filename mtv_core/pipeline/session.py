"""The one orchestration of a render, for the command line, the ComfyUI nodes, the evaluation and the trainer's
sample videos: plan the segments for the audio's length, fit the start image, fingerprint the job, sample and
decode each segment (seed + k, clean prefix from the last tail, colour-matched), keep finished segments in a work
folder, and give frames or an mp4. What comes before (stems, features, text embeddings) is made by the caller
from files (pipeline/job.py) or in memory (the nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import GenerationError
from ..spec import FPS
from .generate import (
    GenerationConfig,
    MemoryOptions,
    SegmentGenerator,
    SegmentInputs,
    job_fingerprint,
    render_segments,
    segment_features,
)
from .keyframes import fit_start_image
from .prompt_schedule import PromptSchedule
from .segments import SegmentPlan, SegmentStore, output_frame_count, plan_segments, to_uint8
from .vae import SPATIAL_FACTOR
from .video import write_mp4


@dataclass
class Render:
    """What a render is of: the prompts and their T5 embeddings (one per prompt), the audio features, the audio's
    length in seconds, and an optional start image (a path, a PIL image or (H, W, 3) values; any size)."""

    text: torch.Tensor
    schedule: PromptSchedule
    features: object  # mtv_core.audio.AudioFeatures
    duration: float
    start_image: object = None

    def __post_init__(self):
        if self.text.shape[0] != len(self.schedule.entries):
            raise GenerationError(f"{self.text.shape[0]} text embeddings for {len(self.schedule.entries)} prompts")


class RenderSession:
    """A model and VAE with sampling and memory settings, ready to render. `identity` names what the model files
    are (it is part of the job fingerprint, so another model never resumes this one's segments). `progress`,
    `preview` and `decode_progress` are the listeners of SegmentGenerator."""

    def __init__(self, model, vae, config: GenerationConfig, memory: MemoryOptions, swap=None, progress=None,
                 interrupt=None, identity=(), parallel=None, preview=None, decode_progress=None):
        self.generator = SegmentGenerator(model, vae, config, memory, swap, progress, interrupt, parallel, preview,
                                          decode_progress)
        self.identity = identity

    @property
    def config(self) -> GenerationConfig:
        return self.generator.config

    @property
    def video_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        config = self.generator.model.config
        return config.sample_width * SPATIAL_FACTOR, config.sample_height * SPATIAL_FACTOR

    def plan(self, render: Render) -> SegmentPlan:
        frames = output_frame_count(render.duration, FPS)
        if frames < 1:
            raise GenerationError(f"the audio lasts {render.duration:.3f}s, shorter than one video frame "
                                  f"(1/{FPS:g}s); give longer audio")
        return plan_segments(frames)

    def start_pixels(self, render: Render) -> torch.Tensor | None:
        return None if render.start_image is None else fit_start_image(render.start_image, *self.video_size)

    def fingerprint(self, render: Render) -> str:
        """Names everything that decides this render's pixels (model, settings, text, audio, start image)."""
        return job_fingerprint(self.generator.model, self.config, self.generator.memory, render.text, render.schedule,
                               render.features, self.plan(render), self.start_pixels(render), *self.identity)

    def segments(self, render: Render, store: SegmentStore | None = None):
        """Each segment's kept frames (F, H, W, 3) uint8 in order; finished segments are kept in `store` (see
        `work_folder`) and reused when the same job runs again."""
        return render_segments(self.generator, render.text, render.schedule, render.features, self.plan(render),
                               store, self.start_pixels(render))

    def work_folder(self, render: Render, folder) -> SegmentStore:
        """The store of this render's segments in a work folder (one subfolder per job, locked while open)."""
        return SegmentStore(folder, self.fingerprint(render))

    def frames(self, render: Render, folder=None) -> torch.Tensor:
        """The whole video as (N, H, W, 3) uint8, N = round(duration x 24); with a work folder, resumable."""
        total = self.plan(render).total_frames
        if folder is None:
            return torch.cat(list(self.segments(render)))[:total]
        with self.work_folder(render, folder) as store:
            return torch.cat(list(self.segments(render, store)))[:total]

    def write(self, render: Render, out, audio, sample_rate: int, folder, keep: bool = False) -> Path:
        """The whole video as an mp4 with `audio` (a (C, T) tensor or blocks), encoded segment by segment as they
        finish; the job's segments are removed once the mp4 exists, unless `keep`."""
        with self.work_folder(render, folder) as store:
            path = write_mp4(out, self.segments(render, store), FPS, audio, sample_rate,
                             frame_count=self.plan(render).total_frames)
            if not keep:
                store.remove()
        return path

    def segment(self, render: Render, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment `index` alone (as in a whole render, without the previous tail): frames (49, H, W, 3) uint8 and
        latents (1, 13, C, h, w)."""
        plan = self.plan(render)
        if not 0 <= index < len(plan.segments):
            raise GenerationError(f"segment {index} does not exist: the audio has {len(plan.segments)} segments "
                                  f"(0..{len(plan.segments) - 1})")
        chosen = plan.segments[index]
        text = render.schedule.embedding_at(render.text, chosen.centre_time(FPS))
        return self.segment_from_windows(text, segment_features(render.features, chosen), self.start_pixels(render),
                                         self.config.segment_seed(index), frozenset(render.features.flags))

    def segment_from_windows(self, text: torch.Tensor, windows: dict, prefix=None, seed: int | None = None,
                             silent=frozenset()):
        """One segment from one text embedding (1, 226, D) and feature windows {stream: (1, 49, dim)}; `silent`:
        the streams encoded from silence."""
        generator = self.generator
        latents = generator.sample_latents(SegmentInputs(text, windows, prefix, silent),
                                           self.config.seed if seed is None else seed)
        return to_uint8(generator.decode(latents)), latents
