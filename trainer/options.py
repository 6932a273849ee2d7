"""What one training run is asked to do, checked when it is made: a `TrainOptions` that exists is one the trainer
can run. Messages name the command-line option, since that is where users set them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mtv_core.lora import MAX_RANK

from .errors import TrainerError
from .objective import ConditioningDropout
from .params import STREAM_PARAMETERS, TRAIN_MODES
from .stages import ALL, STAGE_ORDER

LR_SCHEDULES = ("linear", "constant")
STAGE_DATA = ("cumulative", "subset")
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass(frozen=True)
class TrainOptions:
    stage: str
    data: Path
    out: Path
    init: Path | None = None
    from_scratch: bool = False  # a later stage without --init starts from random weights, not the previous stage
    config: str | None = None
    config_overrides: dict = field(default_factory=dict)
    steps: int = 10000
    batch_size: int = 1
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    warmup: float = 0.01
    lr_schedule: str = "linear"
    dropout: ConditioningDropout = field(default_factory=ConditioningDropout)
    train: str = "official"
    stage_data: str = "cumulative"  # stage k also replays the clips of stages 1..k-1 (the paper adds subsets)
    lora_rank: int = 64
    frozen_streams: tuple[str, ...] = ()  # streams whose own pathway does not train (stems silent in the data)
    ema: float | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    official_interaction_timestep: bool = False  # row 0's timestep for every sample in the interaction blocks
    motion_weight: float = 0.0  # extra loss weight where the clip moves (see objective.motion_weights)
    temporal_weight: float = 0.0  # weight of the frame-to-frame change of the error (see objective)
    save_every: int = 200
    keep: int = 3
    log_every: int = 20
    seed: int = 0
    resume: bool = False
    trust_checkpoint: bool = False  # resume from a folder this machine's trainer did not sign
    progress: bool = True
    sample_every: int = 0  # write a sample video every K steps (needs sample_vae)
    sample_vae: Path | None = None
    sample_steps: int = 10

    def __post_init__(self):
        for name in ("data", "out", "init", "sample_vae"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "frozen_streams", tuple(self.frozen_streams))
        self._check_choices()
        self._check_counts()
        self._check_rates()
        self._check_lora()
        if self.sample_every and self.sample_vae is None:
            raise TrainerError(f"--sample-every {self.sample_every} needs --sample-vae (the VAE the dataset's "
                               "latents were made with) to decode the samples")

    def _check_choices(self) -> None:
        _one_of("--stage", self.stage, (*STAGE_ORDER, ALL))
        _one_of("--lr-schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("--train", self.train, TRAIN_MODES)
        _one_of("--stage-data", self.stage_data, STAGE_DATA)
        _one_of("--mixed-precision", self.mixed_precision, MIXED_PRECISION)
        for stream in self.frozen_streams:
            _one_of("--freeze-streams", stream, tuple(STREAM_PARAMETERS))
        if not isinstance(self.config_overrides, dict):
            raise TrainerError(f"config overrides {self.config_overrides!r} are not KEY=VALUE pairs")

    def _check_counts(self) -> None:
        for flag, value, least in (("--steps", self.steps, 1), ("--batch-size", self.batch_size, 1),
                                   ("--save-every", self.save_every, 1), ("--keep", self.keep, 1),
                                   ("--log-every", self.log_every, 1), ("--sample-every", self.sample_every, 0),
                                   ("--sample-steps", self.sample_steps, 1), ("--seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise TrainerError(f"{flag} {value!r} is out of range; use a whole number ≥ {least}")

    def _check_rates(self) -> None:
        _within("--lr", self.lr, 0, 1, low_open=True)
        if len(self.betas) != 2:
            raise TrainerError(f"--betas {self.betas!r} must be two numbers, e.g. 0.9 0.95")
        for beta in self.betas:
            _within("--betas", beta, 0, 1, high_open=True)
        _within("--weight-decay", self.weight_decay, 0, 10)
        _within("--grad-clip", self.grad_clip, 0, math.inf, low_open=True, fix="0.1 is the official value")
        _within("--warmup", self.warmup, 0, 1, fix="a fraction of the steps, e.g. 0.01")
        _within("--motion-weight", self.motion_weight, 0, 100, fix="0 (official loss) to 100 (2-8 is usual)")
        _within("--temporal-weight", self.temporal_weight, 0, 100, fix="0 (official loss) to 100 (around 1 is usual)")
        for name in ("text", "audio", "per_stream", "clean_mask"):
            _within(f"{name} dropout", getattr(self.dropout, name), 0, 1)
        if self.ema is not None:
            _within("--ema", self.ema, 0, 1, low_open=True, high_open=True, fix="a decay such as 0.999")

    def _check_lora(self) -> None:
        if self.train == "lora" and self.init is None:
            raise TrainerError("--train lora adapts a model: pass --init MODEL.safetensors (the model the LoRA is for)")
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or not 1 <= self.lora_rank <= MAX_RANK:
            raise TrainerError(f"--lora-rank {self.lora_rank!r} is out of range; use 1..{MAX_RANK} (16-128 is usual)")


def _one_of(flag: str, value, choices: tuple) -> None:
    if value not in choices:
        raise TrainerError(f"{flag} {value!r} is unknown; choose one of {', '.join(map(str, choices))}")


def _within(flag: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False,
            fix: str = "") -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < low or value > high or (low_open and value == low) or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise TrainerError(f"{flag} {value!r} is out of range; use a number in {interval}{'; ' + fix if fix else ''}")
