"""Scene transitions: prompts with start times, blended across a transition window.

Entry i is fully active from start_i + transition_i until the next start. During [start_i, start_i + transition_i)
its embedding is a linear blend from the previous entry's (weight 0 at start_i) to its own (weight 1 at the end).
The transformer sees one text embedding per 49-frame segment: the blend evaluated at the segment's centre time
(segment k covers frames 44k .. 44k+48, centre (44k + 24) / fps). A transition is therefore quantised to segments.
The first entry applies from time 0 whatever its start.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class ScheduledPrompt:
    prompt: str
    start: float = 0.0
    transition: float = 0.0


@dataclass(frozen=True)
class PromptSchedule:
    entries: tuple[ScheduledPrompt, ...]

    def __post_init__(self):
        _validate(self.entries)

    @classmethod
    def single(cls, prompt: str) -> "PromptSchedule":
        return cls((ScheduledPrompt(prompt),))

    @property
    def prompts(self) -> list[str]:
        return [entry.prompt for entry in self.entries]

    def weights_at(self, time: float) -> list[float]:
        """Blend weight of each entry at a time in seconds (they sum to 1)."""
        weights = [0.0] * len(self.entries)
        active = max((i for i, e in enumerate(self.entries) if e.start <= time), default=0)
        entry = self.entries[active]
        progress = 1.0 if active == 0 or entry.transition == 0 else (time - entry.start) / entry.transition
        progress = min(max(progress, 0.0), 1.0)
        weights[active] = progress
        if progress < 1.0:
            weights[active - 1] = 1.0 - progress
        return weights

    def embedding_at(self, embeddings: torch.Tensor, time: float) -> torch.Tensor:
        """Blend of the entries' embeddings (N, L, D) at a time -> (1, L, D)."""
        weights = torch.tensor(self.weights_at(time), dtype=embeddings.dtype)
        return (weights[:, None, None] * embeddings).sum(0, keepdim=True)


def _validate(entries) -> None:
    if not entries:
        raise ConfigError("the prompt schedule is empty; give at least one prompt")
    for i, entry in enumerate(entries):
        if not entry.prompt or not entry.prompt.strip():
            raise ConfigError(f"prompt schedule entry {i} has an empty prompt; write a prompt for it")
        for name in ("start", "transition"):
            value = getattr(entry, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"prompt schedule entry {i} has {name} {value!r}; use a time in seconds >= 0")
    for i, (previous, entry) in enumerate(zip(entries, entries[1:]), start=1):
        if entry.start <= previous.start:
            raise ConfigError(f"prompt schedule entry {i} starts at {entry.start}s, not after entry {i - 1} "
                              f"({previous.start}s); list entries in increasing start time")
        if previous.start + previous.transition > entry.start and i > 1:
            raise ConfigError(f"prompt schedule entry {i - 1}'s transition ends at "
                              f"{previous.start + previous.transition}s, after entry {i} starts ({entry.start}s); "
                              "shorten the transition or move the start")


def load_prompt_schedule(path) -> PromptSchedule:
    """A JSON list of {"prompt": str, "start": seconds, "transition": seconds}."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read prompt schedule {str(path)!r}: {error}; give a JSON list of "
                          '{"prompt": ..., "start": seconds, "transition": seconds}') from error
    if not isinstance(items, list) or not all(isinstance(item, dict) and "prompt" in item for item in items):
        raise ConfigError(f"prompt schedule {str(path)!r} must be a JSON list of objects with a 'prompt' key")
    return PromptSchedule(tuple(ScheduledPrompt(str(item["prompt"]), item.get("start", 0.0),
                                                item.get("transition", 0.0)) for item in items))
