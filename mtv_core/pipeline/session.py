"""The one orchestration of a render (a request turned into video frames), for the command line, the ComfyUI nodes,
the evaluation and the trainer's sample videos: plan the segments for the audio's length, fit the start image,
fingerprint the request, sample and decode each segment (seed + k, clean prefix from the last tail),
keep finished segments in a work folder, and give frames or an mp4. What comes before (stems, features, text
embeddings) is made by the caller from files (the command line's job) or in memory (the nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import GenerationError
from ..spec import FPS, PREFIX_FRAMES, SPEECH
from .generate import (
    GenerationConfig,
    MemoryOptions,
    SegmentGenerator,
    SegmentInputs,
    render_fingerprint,
    segment_features,
    segment_speech_levels,
)
from .keyframes import fit_start_image
from .prompt_schedule import PromptSchedule
from .segments import Segment, SegmentPlan, SegmentStore, match_colour, plan_for_duration, to_uint8
from .vae import SPATIAL_FACTOR
from .video import write_mp4


@dataclass(frozen=True, eq=False)
class RenderRequest:
    """What to render: the prompts and their T5 embeddings (one per prompt), the audio features, the audio's length
    in seconds, and an optional start image (a path, a PIL image or (H, W, 3) values; any size). Frozen, so what a
    session works out from a request once stays true of it."""

    text: torch.Tensor
    schedule: PromptSchedule
    features: object  # mtv_core.audio.AudioFeatures
    duration: float
    start_image: object = None

    def __post_init__(self):
        if self.text.shape[0] != len(self.schedule.entries):
            raise GenerationError(f"{self.text.shape[0]} text embeddings for {len(self.schedule.entries)} prompts; "
                                  "encode each scheduled prompt once, in the schedule's order")


class RenderSession:
    """A model and VAE with sampling and memory settings, ready to render. `identity` names what the model files
    are (it is part of the fingerprint, so another model never resumes this one's segments). `progress`,
    `preview` and `decode_progress` are the listeners of SegmentGenerator."""

    def __init__(self, model, vae, config: GenerationConfig, memory: MemoryOptions, swap=None, progress=None,
                 interrupt=None, identity=(), parallel=None, preview=None, decode_progress=None):
        self.generator = SegmentGenerator(model, vae, config, memory, swap, progress, interrupt, parallel, preview,
                                          decode_progress)
        self.identity = identity
        self._prepared_request, self._prepared = None, None

    @property
    def config(self) -> GenerationConfig:
        return self.generator.config

    @property
    def video_size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        config = self.generator.model.config
        return config.sample_width * SPATIAL_FACTOR, config.sample_height * SPATIAL_FACTOR

    def _prepare(self, request: RenderRequest) -> tuple[SegmentPlan, torch.Tensor | None]:
        """The request's segment plan and start image at the video size, worked out once for the latest request."""
        if self._prepared_request is not request:
            start = None if request.start_image is None else fit_start_image(request.start_image, *self.video_size)
            self._prepared = plan_for_duration(request.duration), start
            self._prepared_request = request
        return self._prepared

    def plan(self, request: RenderRequest) -> SegmentPlan:
        return self._prepare(request)[0]

    def start_pixels(self, request: RenderRequest) -> torch.Tensor | None:
        """The start image as one clean frame (3, 1, H, W) in [-1, 1], or None."""
        return self._prepare(request)[1]

    def fingerprint(self, request: RenderRequest) -> str:
        """Names everything that decides this render's pixels (model, settings, text, audio, start image)."""
        plan, start = self._prepare(request)
        return render_fingerprint(self.generator.model, self.config, self.generator.memory, request.text,
                                  request.schedule, request.features, plan, start, *self.identity)

    def segments(self, request: RenderRequest, store: SegmentStore | None = None):
        """Each segment's kept frames (F, H, W, 3) uint8 in order. Finished segments found in `store` (see
        `work_folder`) are reused; new ones are saved there as they finish."""
        plan, start = self._prepare(request)
        tail = None
        for segment in plan.segments:
            stored = store.load(segment.index) if store is not None else None
            if stored is None:
                stored = self._kept_and_tail(request, plan, segment, tail if segment.has_prefix else start)
                if store is not None:
                    store.save(segment.index, *stored)
            yield stored[0]
            tail = stored[1]

    def _kept_and_tail(self, request: RenderRequest, plan: SegmentPlan, segment: Segment, prefix):
        """One segment of a chain: its kept frames (uint8) and its last frames (float), the next one's prefix. A
        segment that continues the previous one is colour-matched to that one's tail, its prefix, when the config asks."""
        generator, steps = self.generator, self.config.steps
        pixels = generator.run(self._inputs(request, segment, prefix), self.config.segment_seed(segment.index),
                               segment.index * steps, len(plan.segments) * steps)
        if segment.has_prefix and self.config.colour_match:
            pixels = match_colour(pixels, prefix)
        return to_uint8(pixels[:, segment.keep_from:]), pixels[:, -PREFIX_FRAMES:].clone()

    def _inputs(self, request: RenderRequest, segment: Segment, prefix) -> SegmentInputs:
        text = request.schedule.embedding_at(request.text, segment.centre_time(FPS))
        features = request.features
        return SegmentInputs(text, segment_features(features, segment), prefix, frozenset(features.flags),
                             self._speech_levels(features, segment))

    def _speech_levels(self, features, segment: Segment):
        """The segment's speech levels when the guidance treats pauses apart (it needs them)."""
        if self.config.guidance.speech_in_pauses is None:
            return None
        levels = segment_speech_levels(features, segment)
        if levels is None and SPEECH not in features.flags:
            raise GenerationError("speech guidance in pauses needs the speech stem's level per frame, which these audio "
                                  "features do not have (encoded by an older version); encode the audio again, or "
                                  "leave speech guidance in pauses unset")
        return levels

    def work_folder(self, request: RenderRequest, folder) -> SegmentStore:
        """The store of this render's segments in a work folder (one subfolder per render, locked while open)."""
        return SegmentStore(folder, self.fingerprint(request))

    def frames(self, request: RenderRequest, folder=None) -> torch.Tensor:
        """The whole video as (N, H, W, 3) uint8, N = round(duration x 24); with a work folder, resumable."""
        total = self.plan(request).total_frames
        if folder is None:
            return torch.cat(list(self.segments(request)))[:total]
        with self.work_folder(request, folder) as store:
            return torch.cat(list(self.segments(request, store)))[:total]

    def write(self, request: RenderRequest, out, audio, sample_rate: int, folder, keep: bool = False) -> Path:
        """The whole video as an mp4 with `audio` (a (C, T) tensor or blocks), encoded segment by segment as they
        finish; the render's segments are removed once the mp4 exists, unless `keep`."""
        with self.work_folder(request, folder) as store:
            path = write_mp4(out, self.segments(request, store), FPS, audio, sample_rate,
                             frame_count=self.plan(request).total_frames)
            if not keep:
                store.remove()
        return path

    def segment(self, request: RenderRequest, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment `index` alone (as in a whole render, without the previous tail): frames (49, H, W, 3) uint8 and
        latents (1, 13, C, h, w)."""
        plan, start = self._prepare(request)
        inputs = self._inputs(request, plan.segment(index), start)
        return self._sample_and_decode(inputs, self.config.segment_seed(index))

    def segment_from_windows(self, text: torch.Tensor, windows: dict, prefix=None, seed: int | None = None,
                             silent=frozenset()):
        """One segment from one text embedding (1, 226, D) and feature windows {stream: (1, 49, dim)}; `silent`:
        the streams encoded from silence."""
        inputs = SegmentInputs(text, windows, prefix, silent)
        return self._sample_and_decode(inputs, self.config.seed if seed is None else seed)

    def _sample_and_decode(self, inputs: SegmentInputs, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.generator.sample_latents(inputs, seed)
        return to_uint8(self.generator.decode(latents)), latents
