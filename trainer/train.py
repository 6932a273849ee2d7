"""The training loop of one stage, and the curriculum that chains the stages."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate.utils import DistributedType
from tqdm import tqdm

from mtv_core import lora
from mtv_core.checkpoints import LORA_KIND, MTV_KIND, adapter_settings, load_lora, load_mtv_model
from mtv_core.models import MTVTransformer3DModel, mtv_config

from .checkpoints import (
    EMA_FILE,
    ENGINE_DIR,
    LORA_EMA_FILE,
    LORA_FILE,
    MODEL_FILE,
    STATE_FORMAT,
    CheckpointFolder,
    load_engine_state,
    save_outputs,
)
from .dataset import ClipDataset, EpochSampler, collate, read_manifest, select_subset
from .engine import describe, make_accelerator
from .errors import TrainerError
from .options import TrainOptions
from .objective import (
    DiffusionObjective,
    drop_conditioning,
    official_alphas_cumprod,
    sample_clean_masks,
    sample_timesteps,
)
from .params import EMA, LORA_TARGETS, adapter_weights, load_adapter, merged_weights, select_trainable, with_averages
from .samples import SampleWriter
from .stages import STAGE_ORDER, previous_stage, stage_subset, stages_to_run

DEFAULT_CONFIG = "official-5b-single"
log = logging.getLogger("trainer")


@dataclass
class StageOutputs:
    """What a stage writes, in its checkpoints and at its end: the whole model, or (--train lora) an adapter file
    for the base model it was trained on."""

    lora_rank: int | None
    config: dict
    base: dict  # mtv_core.lora.base_identity of the model training started from

    @property
    def main_file(self) -> str:
        return MODEL_FILE if self.lora_rank is None else LORA_FILE

    def files(self, weights: dict, averages: dict | None) -> dict:
        chosen = {self.main_file: weights}
        if averages is not None:
            chosen[EMA_FILE if self.lora_rank is None else LORA_EMA_FILE] = with_averages(weights, averages)
        if self.lora_rank is None:
            return {name: (merged_weights(state), self.config, MTV_KIND) for name, state in chosen.items()}
        settings = adapter_settings(self.lora_rank, self.lora_rank, LORA_TARGETS, self.base)
        return {name: (adapter_weights(state), settings, LORA_KIND) for name, state in chosen.items()}


def run_curriculum(options: TrainOptions) -> list[Path]:
    """Run `options.stage` (or every stage for "all"); each starts from the previous stage's output (with --train
    lora: from the same base model, continuing the previous stage's adapter)."""
    stages = stages_to_run(options.stage)
    records = read_manifest(options.data)
    for stage in stages:  # fail before hours of training, not at the stage that lacks clips
        select_subset(options.data, records, stage_subset(stage), stage)
    outputs = []
    for index, stage in enumerate(stages):
        previous = outputs[-1] if outputs else _previous_output(options, stage)
        if options.train == "lora":
            outputs.append(train_stage(options, stage, options.init, previous))
        else:
            outputs.append(train_stage(options, stage, options.init if index == 0 and options.init else previous))
    return outputs


def _previous_output(options: TrainOptions, stage: str) -> Path | None:
    before = previous_stage(stage)
    if before is None or options.from_scratch or (options.init is not None and options.train != "lora"):
        return None
    path = Path(options.out) / before / (LORA_FILE if options.train == "lora" else MODEL_FILE)
    if options.train == "lora" and not path.is_file():
        return None  # a new adapter on the base model
    if not path.is_file():
        raise TrainerError(
            f"stage {stage!r} starts from the {before!r} result {str(path)!r}, which does not exist; "
            f"run `--stage {before}` first, use `--stage all`, pass --init CKPT, or --init none to start from random weights"
        )
    return path


def train_stage(options: TrainOptions, stage: str, init: Path | None, adapter: Path | None = None) -> Path:
    stage_dir = Path(options.out) / stage
    output = stage_dir / (LORA_FILE if options.train == "lora" else MODEL_FILE)
    accelerator = make_accelerator(options.mixed_precision, options.batch_size, options.grad_clip)
    _setup_logging(Path(options.out), accelerator.is_main_process)
    checkpoints = CheckpointFolder(stage_dir, options.keep)
    if options.resume and output.is_file() and checkpoints.latest() is not None:
        log.info("stage %s: already finished (%s), skipped", stage, output)
        return output
    if not options.resume and checkpoints.latest() is not None:
        raise TrainerError(
            f"{str(stage_dir)!r} already holds checkpoints of an earlier run ({checkpoints.latest().name}); "
            "pass --resume to continue it, or choose another --out"
        )

    model = build_model(options, init)
    outputs = StageOutputs(options.lora_rank if options.train == "lora" else None,
                           {key: value for key, value in dict(model.config).items() if not key.startswith("_")},
                           lora.model_identity(model))
    dataset = open_dataset(options, stage, model)
    names = select_trainable(model, options.train, options.lora_rank, options.frozen_streams)
    if adapter is not None:
        previous = load_lora(adapter)
        lora.check_fits(previous, model, outputs.base)
        load_adapter(model, previous)
    if options.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.first_row_interaction_timestep = options.official_interaction_timestep
    model.train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.lr, betas=options.betas, eps=1e-8, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(options))
    sampler = EpochSampler(len(dataset), options.batch_size, options.seed, accelerator.process_index, accelerator.num_processes)
    objective = DiffusionObjective(model, official_alphas_cumprod(), options.motion_weight, options.temporal_weight)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    ema = EMA(accelerator.unwrap_model(objective).model, names, options.ema) if options.ema else None
    step = 0
    if options.resume and checkpoints.latest() is not None:
        step = _restore(checkpoints, accelerator, sampler, schedule, ema, options)
        log.info("stage %s: resumed at step %d from %s", stage, step, checkpoints.latest())
    trained = options.train + "".join(f", {stream} frozen" for stream in options.frozen_streams)
    log.info("stage %s: %d clips, %d trained tensors (%s), %d steps, %s, init %s", stage, len(dataset), len(names),
             trained, options.steps, describe(accelerator), init or "random")
    stage_index = STAGE_ORDER.index(stage)
    samples = SampleWriter(options.sample_vae, options.sample_every, options.sample_steps, stage_dir / "samples")
    sharded = accelerator.distributed_type == DistributedType.FSDP
    bar = _progress_bar(options, accelerator, stage, step)
    started, first_step = time.perf_counter(), step
    while step < options.steps:
        batch = collate([dataset[i] for i in sampler.next_batch()])
        loss = _train_step(objective, optimizer, schedule, accelerator, batch, options, _step_generator(options.seed, stage_index, step, accelerator.process_index))
        step += 1
        if ema is not None:
            ema.update(accelerator.unwrap_model(objective).model)
        _report(bar, step, loss, schedule.get_last_lr()[0], (step - first_step) / (time.perf_counter() - started), options, stage)
        if step % options.save_every == 0 or step == options.steps:
            _save_checkpoint(checkpoints, step, accelerator, objective, sampler, schedule, ema, options, outputs)
        if samples.due(step) and (accelerator.is_main_process or sharded):  # sharded weights: every process samples
            path = samples.write(accelerator.unwrap_model(objective).model, dataset[0], step, accelerator.device,
                                 save=accelerator.is_main_process)
            if path is not None:
                log.info("stage %s: sample video %s", stage, path)
    if bar is not None:
        bar.close()
    _save_output(stage_dir, accelerator, objective, ema, outputs)
    return output


def build_model(options: TrainOptions, init: Path | None) -> MTVTransformer3DModel:
    if init is None:  # from scratch: no pretrained backbone for a zero music modulation to protect
        torch.manual_seed(options.seed)
        model = MTVTransformer3DModel(**mtv_config(options.config or DEFAULT_CONFIG, **options.config_overrides))
        model.init_audio_weights(zero_music=False)
        return model
    model = load_mtv_model(init, dtype=torch.float32)  # float32 master weights; --mixed-precision autocasts compute
    if options.config is not None:
        _check_same_architecture(init, dict(model.config), mtv_config(options.config, **options.config_overrides), options.config)
    return model


def _check_same_architecture(init: Path, found: dict, wanted: dict, name: str) -> None:
    different = {key: (found.get(key), value) for key, value in wanted.items() if found.get(key) != value}
    if different:
        details = ", ".join(f"{key}: checkpoint {have!r}, config {want!r}" for key, (have, want) in sorted(different.items()))
        raise TrainerError(
            f"--init {str(init)!r} is not a {name!r} model ({details}); pass a checkpoint of that variant, "
            f"or leave out --config to train the checkpoint's own variant {found.get('variant')!r}"
        )


def stage_records(options: TrainOptions, stage: str) -> list:
    """The clips of the stage's subset, plus (cumulative) those of the earlier stages' subsets."""
    records = read_manifest(options.data)
    own = select_subset(options.data, records, stage_subset(stage), stage)
    if options.stage_data != "cumulative":
        return own
    earlier = set(STAGE_ORDER[: STAGE_ORDER.index(stage)])
    chosen = {record.id for record in own}
    replay = [r for r in records if r.id not in chosen and earlier & set(r.subsets) and r.latents and r.text]
    return own + replay


def open_dataset(options: TrainOptions, stage: str, model) -> ClipDataset:
    dataset = ClipDataset(options.data, stage_records(options, stage), model.audio_streams)
    width, expected = dataset.feature_dim(), model.config.audio_feature_dim
    if width != expected:
        raise TrainerError(
            f"dataset features are {width} wide per frame but the model takes {expected} (5 frames x layers x width); "
            "prepare the dataset with the wav2vec2 model that matches this MTV model"
        )
    return dataset


def _lr_lambda(options: TrainOptions):
    """Linear warm-up over `warmup` of the steps, then linear decay to 0 (SAT's default), or constant."""
    warmup = max(1, round(options.warmup * options.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if options.lr_schedule == "constant":
            return 1.0
        return max(0.0, (options.steps - step) / max(1, options.steps - warmup))

    return factor


def _step_generator(seed: int, stage_index: int, step: int, rank: int) -> torch.Generator:
    # Derived from the step, so a resumed run draws exactly the noise the uninterrupted run drew.
    return torch.Generator().manual_seed(hash((seed, stage_index, step, rank)) & 0x7FFF_FFFF_FFFF_FFFF)


def _train_step(objective, optimizer, schedule, accelerator, batch, options: TrainOptions, generator) -> float:
    latents = batch["latents"]
    size, frames = latents.shape[:2]
    text, features = drop_conditioning(batch["text"], batch["features"], options.dropout, generator)
    timesteps = sample_timesteps(size, accelerator.process_index, accelerator.num_processes, generator)
    clean_mask = sample_clean_masks(size, frames, options.dropout.clean_mask, generator)
    noise = torch.randn(latents.shape, generator=generator)
    device = accelerator.device
    with accelerator.autocast():
        loss = objective(latents.to(device), text.to(device), {k: v.to(device) for k, v in features.items()},
                         timesteps.to(device), clean_mask.to(device), noise.to(device))
    accelerator.backward(loss)
    if options.grad_clip > 0:
        accelerator.clip_grad_norm_([p for p in objective.parameters() if p.requires_grad], options.grad_clip)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(accelerator.reduce(loss.detach(), reduction="mean"))


def _model_weights(accelerator, objective) -> dict:
    state = accelerator.get_state_dict(objective)
    return {key.removeprefix("model."): value for key, value in state.items()}


def _save_checkpoint(checkpoints: CheckpointFolder, step: int, accelerator, objective, sampler, schedule, ema, options,
                     outputs: StageOutputs) -> None:
    """Every process writes its share of the engine state into the partial folder; rank 0 adds the whole weights
    and the trainer's state and publishes it."""
    if accelerator.is_main_process:
        checkpoints.start(step)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(checkpoints.partial(step) / ENGINE_DIR))
    weights = _model_weights(accelerator, objective)
    averages = ema.full_state() if ema is not None else None
    if accelerator.is_main_process:
        state = {"format": STATE_FORMAT, "step": step, "sampler": sampler.state_dict(), "ema": averages,
                 "schedule": schedule.state_dict(),
                 "engine": describe(accelerator), "processes": accelerator.num_processes,
                 "options": json.loads(json.dumps(asdict(options), default=str))}
        folder = checkpoints.publish(step, outputs.files(weights, averages), state)
        log.info("step %d: checkpoint %s", step, folder)
    accelerator.wait_for_everyone()


def _restore(checkpoints: CheckpointFolder, accelerator, sampler, schedule, ema, options) -> int:
    """The latest checkpoint into the prepared model and optimizer (every process), and the trainer's own state.
    It must verify as this machine's trainer's (or be trusted) and come from the same engine, process count and
    trained set."""
    state = checkpoints.load_state(trusted=options.trust_checkpoint)
    saved = state["options"]
    mismatches = [f"{what}: checkpoint {had!r}, now {now!r}" for what, had, now in (
        ("engine", state["engine"], describe(accelerator)), ("processes", state["processes"], accelerator.num_processes),
        ("--train", saved.get("train"), options.train), ("--config", saved.get("config"), options.config),
        ("--lora-rank", saved.get("lora_rank"), options.lora_rank), ("--ema", saved.get("ema"), options.ema),
        ("--batch-size", saved.get("batch_size"), options.batch_size)) if had != now]
    if mismatches:
        raise TrainerError(f"--resume: {checkpoints.latest()} was written by a different run ({'; '.join(mismatches)}); "
                           "resume with the same launcher config and options, or start in another --out")
    load_engine_state(checkpoints.latest() / ENGINE_DIR, accelerator)
    schedule.load_state_dict(state["schedule"])
    sampler.load_state_dict(state["sampler"])
    if ema is not None:
        ema.load_full_state(state["ema"])
    return int(state["step"])


def _save_output(stage_dir: Path, accelerator, objective, ema, outputs: StageOutputs) -> None:
    weights = _model_weights(accelerator, objective)
    averages = ema.full_state() if ema is not None else None
    if accelerator.is_main_process:
        files = outputs.files(weights, averages)
        save_outputs(stage_dir, files)
        log.info("stage output: %s", ", ".join(str(stage_dir / name) for name in files))
    accelerator.wait_for_everyone()


def _setup_logging(out: Path, main: bool) -> None:
    log.setLevel(logging.INFO)
    if not main or any(getattr(h, "mtv_run", None) == str(out) for h in log.handlers):
        return
    for handler in [h for h in log.handlers if hasattr(h, "mtv_run")]:
        log.removeHandler(handler)
        handler.close()
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.mtv_run = str(out)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)


def _progress_bar(options: TrainOptions, accelerator, stage: str, step: int):
    if not (options.progress and accelerator.is_main_process):
        return None

    return tqdm(total=options.steps, initial=step, desc=stage, unit="step", dynamic_ncols=True)


def _report(bar, step: int, loss: float, lr: float, rate: float, options: TrainOptions, stage: str) -> None:
    if bar is not None:
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", steps_per_s=f"{rate:.2f}")
        bar.update(1)
    if step % options.log_every == 0 or step == options.steps:
        log.info("stage %s step %d loss %.5f lr %.3e steps/s %.3f", stage, step, loss, lr, rate)
