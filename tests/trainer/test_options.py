"""A TrainOptions that exists is one the trainer can run: every bad value is refused when it is made, naming the
option, the value and what to use."""

import dataclasses
from pathlib import Path

import pytest

from trainer import TrainerError
from trainer.objective import ConditioningDropout
from trainer.options import TrainOptions


def make(**changes) -> TrainOptions:
    return TrainOptions(**{"stage": "basic_face", "data": "data", "out": "run", **changes})


def test_defaults_are_valid_and_paths_become_paths():
    options = make(init="base.safetensors", frozen_streams=["music"], betas=[0.9, 0.99])
    assert options.data == Path("data") and options.init == Path("base.safetensors")
    assert options.frozen_streams == ("music",) and options.betas == (0.9, 0.99)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.steps = 5


@pytest.mark.parametrize("changes, message", [
    (dict(stage="stage_six"), "--stage 'stage_six' is unknown; choose one of basic_face"),
    (dict(steps=0), r"--steps 0 is out of range; use a whole number ≥ 1"),
    (dict(steps=2.5), r"--steps 2.5 is out of range"),
    (dict(batch_size=True), r"--batch-size True is out of range"),
    (dict(save_every=-1), r"--save-every -1 is out of range"),
    (dict(lr=0.0), r"--lr 0.0 is out of range; use a number in \(0, 1\]"),
    (dict(lr=float("nan")), r"--lr nan is out of range"),
    (dict(betas=(0.9, 1.0)), r"--betas 1.0 is out of range; use a number in \[0, 1\)"),
    (dict(betas=(0.9,)), r"--betas \(0.9,\) must be two numbers"),
    (dict(warmup=1.5), r"--warmup 1.5 is out of range; use a number in \[0, 1\]; a fraction of the steps"),
    (dict(grad_clip=0), r"--grad-clip 0 is out of range"),
    (dict(motion_weight=101), r"--motion-weight 101 is out of range; use a number in \[0, 100\]"),
    (dict(temporal_weight=-1), r"--temporal-weight -1 is out of range; use a number in \[0, 100\]"),
    (dict(ema=1.0), r"--ema 1.0 is out of range; use a number in \(0, 1\); a decay such as 0.999"),
    (dict(lr_schedule="cosine"), "--lr-schedule 'cosine' is unknown; choose one of linear, constant"),
    (dict(train="some"), "--train 'some' is unknown"),
    (dict(stage_data="all"), "--stage-data 'all' is unknown"),
    (dict(mixed_precision="fp8"), "--mixed-precision 'fp8' is unknown"),
    (dict(frozen_streams=("speech", "voices")), "--freeze-streams 'voices' is unknown"),
    (dict(dropout=ConditioningDropout(text=1.2)), r"text dropout 1.2 is out of range"),
    (dict(sample_every=5), "--sample-every 5 needs --sample-vae"),
    (dict(train="lora"), "--train lora adapts a model: pass --init"),
    (dict(lora_rank=2000), "--lora-rank 2000 is out of range; use 1..1024"),
])
def test_bad_values_are_refused_when_the_options_are_made(changes, message):
    with pytest.raises(TrainerError, match=message):
        make(**changes)

