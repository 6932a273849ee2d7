"""Classifier-free guidance: the official joint CFG and nested per-stream scales, batched into one forward.

Branches are nested in a fixed order, each adding one condition to the previous one:
    e0 = e(∅)                      zero text, null audio for every stream (the official unconditional)
    e1 = e(text)
    e2 = e(text, speech)           speech includes the second speaker (speech2) on a multi model
    e3 = e(text, speech, effects)
    e4 = e(text, speech, effects, music)
    eps = e0 + s_text(e1 - e0) + s_speech(e2 - e1) + s_effects(e3 - e2) + s_music(e4 - e3)
        = (1 - s_text) e0 + (s_text - s_speech) e1 + (s_speech - s_effects) e2 + (s_effects - s_music) e3 + s_music e4
A branch whose coefficient is 0 is not computed: with all four scales equal to s this is the official joint CFG
e0 + s(e4 - e0) at two forwards per step; with s_text = 1 the unconditional branch drops out.
A stream encoded from silence (a silent or absent stem) is guided at the `silent` scale, by default the text scale
(which keeps the joint CFG at two forwards): the step from its null input to wav2vec(silence) carries no timing, and
a large scale only amplifies that difference into every token, pulling the picture towards whatever the training
clips showed when that stem was silent. README ("Official weights") gives what this did on the demo.
"null audio" is the projection of zero wav2vec features (what the official code feeds), not zero tokens.
Guidance is applied to the v-prediction; the coefficients sum to 1, so this equals guiding x0 or eps.
"""

from dataclasses import dataclass, replace

import torch

from ..errors import ConfigError
from ..spec import GUIDANCE_ORDER, MAX_GUIDANCE, OFFICIAL_GUIDANCE, SPEECH, SPEECH2

MAX_BRANCHES = len(GUIDANCE_ORDER) + 1  # e0 .. e4: what one step batches when every scale differs

# The branch level at which a condition turns on: text 1, speech 2 (the second speaker with it), effects 3, music 4.
STREAM_LEVEL = {**{name: level for level, name in enumerate(GUIDANCE_ORDER, start=1)}, SPEECH2: GUIDANCE_ORDER.index(SPEECH) + 1}


@dataclass(frozen=True)
class GuidanceScales:
    """A scale per condition (in GUIDANCE_ORDER), each checked when the scales are made."""

    text: float = OFFICIAL_GUIDANCE
    speech: float = OFFICIAL_GUIDANCE
    effects: float = OFFICIAL_GUIDANCE
    music: float = OFFICIAL_GUIDANCE
    silent: float | None = None  # for a stream encoded from silence; None: the text scale

    def __post_init__(self):
        given = (*GUIDANCE_ORDER, "silent") if self.silent is not None else GUIDANCE_ORDER
        for name in given:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= MAX_GUIDANCE:
                raise ConfigError(f"{name} guidance scale {value!r} is out of range; use a number in [0, {MAX_GUIDANCE}] "
                                  f"(official joint scale: {OFFICIAL_GUIDANCE}; 1 = no guidance)")

    @classmethod
    def joint(cls, scale: float = OFFICIAL_GUIDANCE) -> "GuidanceScales":
        return cls(*(scale for _ in GUIDANCE_ORDER))

    def for_silent(self, silent, streams=()) -> "GuidanceScales":
        """These scales with each stream in `silent` at the silent scale. Speech and the second speaker (speech2,
        among `streams` on a multi model) share one level: it counts as silent only when both are."""
        muted = {name for name in GUIDANCE_ORDER[1:] if name in silent}
        if SPEECH2 in streams and SPEECH2 not in silent:
            muted.discard(SPEECH)
        scale = self.text if self.silent is None else self.silent
        return replace(self, **{name: scale for name in muted})

    def branch_weights(self) -> dict[int, float]:
        """Branch level -> coefficient, leaving out zero coefficients."""
        weights = {0: 1.0 - self.text, 1: self.text - self.speech, 2: self.speech - self.effects,
                   3: self.effects - self.music, 4: self.music}
        return {level: weight for level, weight in weights.items() if weight != 0.0}


def branch_inputs(level: int, text: torch.Tensor, tokens: dict, null_tokens: dict):
    """Text embedding and audio tokens of one branch level."""
    branch_text = text if level >= 1 else torch.zeros_like(text)
    branch_tokens = {name: tokens[name] if level >= STREAM_LEVEL[name] else null_tokens[name] for name in tokens}
    return branch_text, branch_tokens


class GuidedModel:
    """model_fn(x, t) for the samplers: runs every needed branch in one batched forward and combines them. In a
    parallel run (`parallel`: pipeline.parallel.ParallelRun) this process runs its share of the branches and the
    weighted parts are summed across processes."""

    def __init__(self, model, text: torch.Tensor, tokens: dict | None, null_tokens: dict | None,
                 scales: GuidanceScales, clean_mask: torch.Tensor | None = None, parallel=None, silent=frozenset()):
        self.model = model
        self.weights = _level_weights(scales.for_silent(silent, tokens or {}), tokens)
        self.parallel = parallel
        if parallel is not None:  # the processes were split for the branches of the scales as given
            planned = _level_weights(scales, tokens)
            self.weights = parallel.my_branches({level: self.weights.get(level, 0.0)
                                                 for level in sorted(planned.keys() | self.weights.keys())})
        self.clean_mask = clean_mask
        self.text, self.tokens = self._batch(text, tokens, null_tokens)

    def _batch(self, text, tokens, null_tokens):
        branches = [branch_inputs(level, text, tokens or {}, null_tokens or {}) for level in self.weights]
        batched_text = torch.cat([b[0] for b in branches])
        if tokens is None:
            return batched_text, None
        return batched_text, {name: torch.cat([b[1][name] for b in branches]) for name in tokens}

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        count = len(self.weights)
        param = next(self.model.parameters())
        batch = torch.cat([x] * count).to(param.device, param.dtype)
        timestep = torch.full((batch.shape[0],), t, dtype=torch.long, device=param.device)
        mask = None if self.clean_mask is None else torch.cat([self.clean_mask] * count).to(param.device)
        tokens = None if self.tokens is None else {k: v.to(param.device, param.dtype) for k, v in self.tokens.items()}
        v = self.model(batch, self.text.to(param.device, param.dtype), timestep, audio_tokens=tokens, clean_mask=mask)
        parts = v.float().to(x.device).chunk(count)
        guided = sum(weight * part for weight, part in zip(self.weights.values(), parts))
        return guided if self.parallel is None else self.parallel.combine(guided)


def _level_weights(scales: GuidanceScales, tokens) -> dict[int, float]:
    weights = scales.branch_weights()
    if tokens is None:  # a backbone run without audio: speech/effects/music levels equal the text level
        return _merge_audio_levels(weights)
    return weights


def _merge_audio_levels(weights: dict[int, float]) -> dict[int, float]:
    merged = {}
    for level, weight in weights.items():
        key = min(level, 1)
        merged[key] = merged.get(key, 0.0) + weight
    return {level: weight for level, weight in merged.items() if weight != 0.0}
