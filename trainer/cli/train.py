"""`python -m trainer [train] --stage NAME --data DIR --out RUN ...`: train MTV stage by stage."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import TrainerError
from ..objective import ConditioningDropout
from ..options import LR_SCHEDULES, MIXED_PRECISION, STAGE_DATA, TrainOptions
from ..params import STREAM_PARAMETERS, TRAIN_MODES
from ..stages import ALL, STAGE_ORDER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", required=True, choices=[*STAGE_ORDER, ALL])
    parser.add_argument("--data", required=True, type=Path, help="dataset folder written by `prepare`")
    parser.add_argument("--out", required=True, type=Path, help="run folder; stage outputs go to RUN/<stage>/model.safetensors")
    parser.add_argument("--init", type=Path, help="MTV safetensors to start from (default: the previous stage's output; 'none': random weights of --config)")
    parser.add_argument("--config", help="named model config (e.g. tiny-single); with --init it must match the checkpoint")
    parser.add_argument("--config-override", action="append", default=[], metavar="KEY=JSON", help="override one config value")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95))
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--grad-clip", type=float, default=0.1)
    parser.add_argument("--warmup", type=float, default=0.01, help="fraction of steps of linear warm-up")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="linear")
    parser.add_argument("--text-dropout", type=float, default=0.1)
    parser.add_argument("--audio-dropout", type=float, default=0.05, help="all streams zeroed together")
    parser.add_argument("--stream-dropout", type=float, default=0.0, help="each stream zeroed independently (per-stream guidance)")
    parser.add_argument("--clean-mask-prob", type=float, default=0.25)
    parser.add_argument("--motion-weight", type=float, default=0.0, metavar="W",
                        help="weight the loss by 1 + W x how much the clip moves at each latent position (small moving parts "
                             "such as mouths learn faster); 0 = the official plain loss")
    parser.add_argument("--temporal-weight", type=float, default=0.0, metavar="W",
                        help="add W x the error's change from one latent frame to the next, so errors that flicker "
                             "cost more than errors shared by neighbouring frames; 0 = the official plain loss")
    parser.add_argument("--sample-every", type=int, default=0, metavar="K", help="write RUN/<stage>/samples/step-K.mp4 every K steps")
    parser.add_argument("--sample-vae", type=Path, help="the VAE the dataset's latents were made with (to decode samples)")
    parser.add_argument("--sample-steps", type=int, default=10, help="sampler steps for the sample videos")
    parser.add_argument("--stage-data", choices=STAGE_DATA, default="cumulative",
                        help="cumulative: a stage also replays the earlier stages' subsets (the paper adds subsets stage by stage); subset: only its own")
    parser.add_argument("--train", choices=TRAIN_MODES, default="official", help="which parameters train: official (audio modules + backbone attention + norm2), audio, lora, or all (training from scratch)")
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--freeze-streams", nargs="+", default=[], choices=list(STREAM_PARAMETERS), metavar="STREAM",
                        help="keep these streams' own modules fixed: for data whose stems of that kind are all silent, "
                             "which would otherwise teach the pathway to ignore its input")
    parser.add_argument("--ema", type=float, metavar="DECAY", help="keep an EMA of the trained weights (model-ema.safetensors)")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--official-interaction-timestep", action="store_true",
                        help="the interaction blocks take batch row 0's timestep for every sample, as the official trainer does")
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--keep", type=int, default=3, help="step checkpoints kept per stage")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of the run")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="resume from a checkpoint folder this machine's trainer did not sign (one copied from "
                             "elsewhere): its engine files are unpickled, which can run code")
    parser.add_argument("--no-progress", action="store_true")


def _overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise TrainerError(f"--config-override {item!r} is not KEY=VALUE (e.g. num_layers=2)")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides



def run(args) -> int:
    from ..train import run_curriculum

    options = TrainOptions(
        stage=args.stage, data=args.data, out=args.out, config=args.config,
        init=None if str(args.init) == "none" else args.init, from_scratch=str(args.init) == "none",
        config_overrides=_overrides(args.config_override), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        betas=tuple(args.betas), weight_decay=args.weight_decay, grad_clip=args.grad_clip, warmup=args.warmup,
        lr_schedule=args.lr_schedule,
        dropout=ConditioningDropout(args.text_dropout, args.audio_dropout, args.stream_dropout, args.clean_mask_prob),
        train=args.train, stage_data=args.stage_data, lora_rank=args.lora_rank, frozen_streams=tuple(args.freeze_streams),
        ema=args.ema, mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing, official_interaction_timestep=args.official_interaction_timestep,
        motion_weight=args.motion_weight, temporal_weight=args.temporal_weight,
        save_every=args.save_every, keep=args.keep,
        log_every=args.log_every, seed=args.seed, resume=args.resume, trust_checkpoint=args.trust_checkpoint, progress=not args.no_progress,
        sample_every=args.sample_every, sample_vae=args.sample_vae, sample_steps=args.sample_steps,
    )
    outputs = run_curriculum(options)
    if os.environ.get("RANK", "0") == "0":  # one list of outputs, not one per process
        for path in outputs:
            print(path)
    return 0
