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
`speech_in_pauses` guides speech at another scale in the latent frames where nobody speaks (pipeline/pauses.py), from
the same branch outputs: the weights become per latent frame, so a step costs no more forwards. `speech_pause_keep`
keeps speech's own scale at that share of each pause frame's positions where speech pushes hardest (the largest
e2 - e1): on the demo those are the mouths, held still by the push, while the push elsewhere moved the whole picture
(the wall's colour) towards the training clips without a speaker. README ("Long clips") gives what both did.
"null audio" is the projection of zero wav2vec features (what the official code feeds), not zero tokens.
Guidance is applied to the v-prediction; the coefficients sum to 1, so this equals guiding x0 or eps.

`until` limits a condition's guidance to the noisier part of the schedule (Kynkaenniemi et al. 2024, "Applying
Guidance in a Limited Interval Improves Sample and Distribution Quality in Diffusion Models"): at timestep
t < (1 - until) * 1000 that condition's scale is 1, conditioned but not pushed. With every condition stopped a step runs
the fully conditioned model alone, e4, in one forward. None guides every step, as the official sampler does. README
("Long clips") gives what it did to the demo's flicker and mouths.
"""

from dataclasses import dataclass, replace

import torch

from ..errors import ConfigError
from ..spec import GUIDANCE_ORDER, MAX_GUIDANCE, OFFICIAL_GUIDANCE, SPEECH, SPEECH2, TRAIN_TIMESTEPS

MAX_BRANCHES = len(GUIDANCE_ORDER) + 1  # e0 .. e4: what one step batches when every scale differs
SPEECH_LEVEL = GUIDANCE_ORDER.index(SPEECH) + 1  # e2: text and speech

# The branch level at which a condition turns on: text 1, speech 2 (the second speaker with it), effects 3, music 4.
STREAM_LEVEL = {**{name: level for level, name in enumerate(GUIDANCE_ORDER, start=1)}, SPEECH2: SPEECH_LEVEL}


@dataclass(frozen=True)
class GuidanceScales:
    """A scale per condition (in GUIDANCE_ORDER) and where in the schedule each stops, checked when made."""

    text: float = OFFICIAL_GUIDANCE
    speech: float = OFFICIAL_GUIDANCE
    effects: float = OFFICIAL_GUIDANCE
    music: float = OFFICIAL_GUIDANCE
    silent: float | None = None  # for a stream encoded from silence; None: the text scale
    # The part of the noise schedule each condition is guided in, {condition: fraction} (one number: every
    # condition); a condition left out, or at 1, is guided at every step. None: every condition (official).
    until: dict | None = None
    speech_in_pauses: float | None = None  # speech's scale in latent frames where nobody speaks; None: speech's
    speech_pause_keep: float | None = None  # share of a pause frame's positions that keep speech's scale; None: none

    def __post_init__(self):
        given = (*GUIDANCE_ORDER, *(name for name in ("silent", "speech_in_pauses") if getattr(self, name) is not None))
        for name in given:
            value = getattr(self, name)
            if not _number_in(value, 0.0, MAX_GUIDANCE):
                raise ConfigError(f"{name} guidance scale {value!r} is out of range; use a number in [0, {MAX_GUIDANCE}] "
                                  f"(official joint scale: {OFFICIAL_GUIDANCE}; 1 = no guidance)")
        keep = self.speech_pause_keep
        if keep is not None and not _number_in(keep, 0.0, 1.0):
            raise ConfigError(f"speech pause keep {keep!r} is out of range; use a share of positions in [0, 1] "
                              "(0.1: the tenth where speech pushes hardest keeps its scale)")
        if keep and self.speech_in_pauses is None:
            raise ConfigError(f"speech pause keep {keep!r} is set without a speech scale in pauses; set that too "
                              "(speech_in_pauses), or leave the keep unset")
        object.__setattr__(self, "until", _checked_until(self.until))

    @classmethod
    def joint(cls, scale: float = OFFICIAL_GUIDANCE) -> "GuidanceScales":
        return cls(*(scale for _ in GUIDANCE_ORDER))

    def stopped_at(self, t: float) -> frozenset:
        """The conditions no longer guided at timestep t."""
        return frozenset(name for name, until in (self.until or {}).items() if t < (1.0 - until) * TRAIN_TIMESTEPS)

    def phases(self) -> set[frozenset]:
        """Every set of stopped conditions some timestep has."""
        stops = {(1.0 - until) * TRAIN_TIMESTEPS for until in (self.until or {}).values()}
        return {self.stopped_at(TRAIN_TIMESTEPS)} | {self.stopped_at(stop - 1e-6) for stop in stops}

    def without(self, stopped) -> "GuidanceScales":
        """These scales with the `stopped` conditions at 1 (conditioned, not guided)."""
        scales = replace(self, **dict.fromkeys(stopped, 1.0), until=None)
        return scales.without_pauses() if SPEECH in stopped else scales

    def for_silent(self, silent, streams=()) -> "GuidanceScales":
        """These scales with each stream in `silent` at the silent scale. Speech and the second speaker (speech2,
        among `streams` on a multi model) share one level: it counts as silent only when both are."""
        muted = {name for name in GUIDANCE_ORDER[1:] if name in silent}
        if SPEECH2 in streams and SPEECH2 not in silent:
            muted.discard(SPEECH)
        scale = self.text if self.silent is None else self.silent
        scales = replace(self, **{name: scale for name in muted})
        return scales.without_pauses() if SPEECH in muted else scales

    def without_pauses(self) -> "GuidanceScales":
        """These scales with speech guided alike in pauses."""
        return replace(self, speech_in_pauses=None, speech_pause_keep=None)

    def in_pauses(self) -> "GuidanceScales":
        """These scales where nobody speaks (outside the kept share)."""
        if self.speech_in_pauses is None:
            return self
        return replace(self.without_pauses(), speech=self.speech_in_pauses)

    def branch_weights(self) -> dict[int, float]:
        """Branch level -> coefficient, leaving out zero coefficients."""
        weights = {0: 1.0 - self.text, 1: self.text - self.speech, 2: self.speech - self.effects,
                   3: self.effects - self.music, 4: self.music}
        return {level: weight for level, weight in weights.items() if weight != 0.0}


def _number_in(value, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high


def parse_until(text: str) -> dict | None:
    """'0.6' (every condition), 'speech=0.6, text=0.6' (those conditions) or '' (every step) -> GuidanceScales.until,
    checked."""
    text = text.strip()
    if not text:
        return None
    try:
        if "=" not in text:
            parsed = float(text)
        else:
            pairs = [part.split("=") for part in text.split(",") if part.strip()]
            parsed = {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise ConfigError(f"guidance until {text!r} is not understood; write one fraction for every condition (0.6) "
                          f"or condition=fraction pairs ('speech=0.6, text=0.6'; conditions: {', '.join(GUIDANCE_ORDER)})") from None
    return _checked_until(parsed)


def _checked_until(until) -> dict | None:
    """`until` as {condition: fraction below 1}, None when every condition is guided throughout."""
    if until is None:
        return None
    if not isinstance(until, dict):
        until = dict.fromkeys(GUIDANCE_ORDER, until)
    for name, value in until.items():
        if name not in GUIDANCE_ORDER:
            raise ConfigError(f"guidance until names {name!r}, which is no condition; use {', '.join(GUIDANCE_ORDER)}")
        if not _number_in(value, 0.0, 1.0):
            raise ConfigError(f"guidance until {value!r} for {name} is out of range; use a fraction of the noise "
                              "schedule in [0, 1] (1: guide every step, as the official sampler does)")
    return {name: float(value) for name, value in until.items() if value < 1.0} or None


def branch_inputs(level: int, text: torch.Tensor, tokens: dict, null_tokens: dict):
    """Text embedding and audio tokens of one branch level."""
    branch_text = text if level >= 1 else torch.zeros_like(text)
    branch_tokens = {name: tokens[name] if level >= STREAM_LEVEL[name] else null_tokens[name] for name in tokens}
    return branch_text, branch_tokens


class GuidedModel:
    """model_fn(x, t) for the samplers: runs every needed branch in one batched forward and combines them, with the
    conditions whose guidance has stopped at t at scale 1, and speech at its pause scale in the latent frames `pauses`
    ((T,) bool) marks. In a parallel run (`parallel`: pipeline.parallel.ParallelRun) this process runs its share of the
    branches and the weighted parts are summed across processes."""

    def __init__(self, model, text: torch.Tensor, tokens: dict | None, null_tokens: dict | None,
                 scales: GuidanceScales, clean_mask: torch.Tensor | None = None, parallel=None, silent=frozenset(),
                 pauses: torch.Tensor | None = None):
        self.model, self.clean_mask, self.parallel, self.scales = model, clean_mask, parallel, scales
        phases = {stopped: _phase(scales.without(stopped).for_silent(silent, tokens or {}), tokens, pauses)
                  for stopped in scales.phases()}
        if parallel is not None:  # the processes were split for the branches of the scales as given
            planned = set(_level_weights(scales.without(()), tokens)).union(*(phase.weights for phase in phases.values()))
            mine = parallel.my_branches(dict.fromkeys(sorted(planned), 0.0))
            phases = {stopped: replace(phase, weights={level: w for level, w in phase.weights.items() if level in mine})
                      for stopped, phase in phases.items()}
        self.branches = {stopped: _Branches(phase, text, tokens, null_tokens) for stopped, phase in phases.items()}

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        branches = self.branches[self.scales.stopped_at(t)]
        guided, speech_step = branches.predict(self.model, x, t, self.clean_mask)
        if self.parallel is not None:
            guided, speech_step = self._combined(guided, speech_step)
        return guided if branches.kept is None else branches.kept.restore(guided, speech_step)

    def _combined(self, guided: torch.Tensor, speech_step: torch.Tensor | None):
        if speech_step is None:
            return self.parallel.combine(guided), None
        return self.parallel.combine(torch.cat([guided, speech_step])).chunk(2)


@dataclass
class _KeptSpeech:
    """Speech's full push back at the `share` of each pause latent frame's positions where its step e2 - e1 is
    largest: `extra` (speech's scale less its pause scale) x that step there."""

    in_pause: torch.Tensor  # (1, T, 1, 1, 1) bool
    extra: float
    share: float

    def restore(self, guided: torch.Tensor, speech_step: torch.Tensor) -> torch.Tensor:
        strength = speech_step.norm(dim=2, keepdim=True)  # (B, T, 1, h, w)
        flat = strength.flatten(2)
        count = max(1, round(self.share * flat.shape[-1]))
        threshold = flat.topk(count, dim=-1).values[..., -1:, None, None]
        kept = (strength >= threshold) & self.in_pause.to(guided.device)
        return guided + self.extra * speech_step * kept


@dataclass
class _Phase:
    """What one kind of step combines: branch level -> weight (a number, or one per latent frame), and speech's push
    kept in part of the pauses."""

    weights: dict
    kept: _KeptSpeech | None = None


class _Branches:
    """The guidance branches one kind of step runs, their inputs batched once, and their weights."""

    def __init__(self, phase: _Phase, text: torch.Tensor, tokens: dict | None, null_tokens: dict | None):
        self.weights, self.kept = phase.weights, phase.kept
        inputs = [branch_inputs(level, text, tokens or {}, null_tokens or {}) for level in self.weights]
        self.text = torch.cat([branch[0] for branch in inputs]) if inputs else None
        self.tokens = None if tokens is None or not inputs else {
            name: torch.cat([branch[1][name] for branch in inputs]) for name in tokens}

    def predict(self, model, x: torch.Tensor, t: int, clean_mask: torch.Tensor | None):
        """This process's weighted sum of its branches and, when speech is kept in part of the pauses, its part of
        speech's step e2 - e1 (None otherwise)."""
        no_step = None if self.kept is None else torch.zeros_like(x)
        if not self.weights:
            return torch.zeros_like(x), no_step
        count = len(self.weights)
        param = next(model.parameters())
        batch = torch.cat([x] * count).to(param.device, param.dtype)
        timestep = torch.full((batch.shape[0],), t, dtype=torch.long, device=param.device)
        mask = None if clean_mask is None else torch.cat([clean_mask] * count).to(param.device)
        tokens = None if self.tokens is None else {k: v.to(param.device, param.dtype) for k, v in self.tokens.items()}
        v = model(batch, self.text.to(param.device, param.dtype), timestep, audio_tokens=tokens, clean_mask=mask)
        parts = dict(zip(self.weights, v.float().to(x.device).chunk(count)))
        guided = sum(_on(weight, parts[level].device) * parts[level] for level, weight in self.weights.items())
        if self.kept is None:
            return guided, None
        return guided, parts.get(SPEECH_LEVEL, no_step) - parts.get(SPEECH_LEVEL - 1, no_step)


def _on(weight, device):
    """A branch weight, a number or one per latent frame, where the branch's output is."""
    return weight.to(device) if isinstance(weight, torch.Tensor) else weight


def _phase(scales: GuidanceScales, tokens, pauses: torch.Tensor | None) -> _Phase:
    """One phase's weights: numbers, or (1, T, 1, 1, 1) per latent frame where speech's scale differs in the pauses
    (`pauses`, (T,) bool); speech's push kept in part of them when asked."""
    spoken = _level_weights(scales, tokens)
    paused = _level_weights(scales.in_pauses(), tokens)
    if pauses is None or not bool(pauses.any()) or paused == spoken:
        return _Phase(spoken)
    in_pause = pauses.view(1, -1, 1, 1, 1)
    weights = {level: torch.where(in_pause, paused.get(level, 0.0), spoken.get(level, 0.0))
               for level in sorted(set(spoken) | set(paused))}
    if not scales.speech_pause_keep:
        return _Phase(weights)
    return _Phase(weights, _KeptSpeech(in_pause, scales.speech - scales.speech_in_pauses, scales.speech_pause_keep))


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
