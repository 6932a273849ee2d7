"""One video across processes: how the work is split, the split model against the single process (2 gloo processes
on the CPU), and a whole `torchrun ... generate` against a single-process run."""

import glob
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from mtv_core import testing
from mtv_core.errors import ConfigError
from mtv_core.pipeline.guidance import GuidanceScales, GuidedModel
from mtv_core.pipeline.parallel import ParallelPlan, ParallelRun, plan_parallel
from mtv_core.pipeline.speed import StepCache

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("processes, heads, branches, plan", [
    (1, 48, 2, ParallelPlan(1, 1)), (2, 48, 2, ParallelPlan(1, 2)), (4, 48, 2, ParallelPlan(2, 2)),
    (8, 48, 5, ParallelPlan(2, 4)), (3, 48, 2, ParallelPlan(3, 1)), (6, 4, 5, ParallelPlan(2, 3)),
])
def test_auto_prefers_branch_groups_then_ulysses(processes, heads, branches, plan):
    assert plan_parallel("auto", processes, heads, branches) == plan


@pytest.mark.parametrize("text, processes, words", [
    ("ulysses=2,branches=2", 2, "needs 4 processes (ulysses=2,branches=2) but 2 are running"),
    ("ulysses=2", 1, "start 2 processes with torchrun --nproc-per-node 2"),
    ("ulysses=5", 5, "ulysses=5 does not divide the model's 48 attention heads; use one of [1, 2, 3, 4, 6, 8"),
    ("branches=3", 3, "branches=3 but these guidance scales need 2 branches per step"),
    ("ulysses=two", 2, "is not understood"),
    ("ulysses=0", 2, "is not understood"),
    ("", 2, "is empty"),
])
def test_bad_splits_say_what_fits(text, processes, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        plan_parallel(text, processes, 48, 2)


def test_first_block_cache_is_refused_when_rows_are_split():
    with pytest.raises(ConfigError, match="use the taylorseer step cache"):
        plan_parallel("ulysses=2", 2, 48, 2, StepCache.parse("fbc"))
    assert plan_parallel("branches=2", 2, 48, 2, StepCache.parse("fbc")) == ParallelPlan(1, 2)


def _inputs(model):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 13, 16, 6, 6, generator=generator)  # 3 rows of patches: one padding row with 2 processes
    text = torch.randn(1, 226, 32, generator=generator)
    features = {name: torch.randn(1, 49, model.config.audio_feature_dim, generator=generator) for name in model.audio_streams}
    with torch.no_grad():
        tokens = model.project_audio(features)
        null_tokens = model.project_audio({name: torch.zeros_like(value) for name, value in features.items()})
    clean_mask = torch.zeros(1, 13, dtype=torch.bool)
    clean_mask[:, :2] = True
    return latents, text, tokens, null_tokens, clean_mask


FIVE_BRANCHES = GuidanceScales(text=5.0, speech=4.0, effects=3.0, music=2.0)


def _guided_prediction(parallel=None, until=None, timestep=600, scales=FIVE_BRANCHES, pauses=None) -> torch.Tensor:
    model = testing.tiny_mtv_model(sample_height=6, sample_width=6).eval()
    latents, text, tokens, null_tokens, clean_mask = _inputs(model)
    if parallel is not None:
        parallel.install(model)
    scales = replace(scales, until=until)
    with torch.no_grad():
        return GuidedModel(model, text, tokens, null_tokens, scales, clean_mask, parallel, pauses=pauses)(latents, timestep)


def _process(rank: int, plan: ParallelPlan, init_file: str, out: str, until=None, timestep=600, scales=FIVE_BRANCHES,
             pauses=None) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=plan.size)
    try:
        torch.save(_guided_prediction(ParallelRun(plan, "cpu"), until, timestep, scales, pauses), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("plan", [ParallelPlan(ulysses=2, branches=1), ParallelPlan(ulysses=1, branches=2)])
def test_two_processes_predict_what_one_does(tmp_path, plan):
    mp.start_processes(_process, args=(plan, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=plan.size,
                       start_method="spawn")
    alone = _guided_prediction()
    for rank in range(plan.size):
        torch.testing.assert_close(torch.load(tmp_path / f"out.{rank}"), alone, atol=2e-5, rtol=1e-5)


def test_an_unguided_step_split_over_branch_groups_predicts_what_one_process_does(tmp_path):
    """Below the guided part only the fully conditioned branch runs: one branch group computes it, the other adds 0."""
    plan, until, timestep = ParallelPlan(ulysses=1, branches=2), 0.6, 300
    mp.start_processes(_process, args=(plan, str(tmp_path / "init"), str(tmp_path / "out"), until, timestep),
                       nprocs=plan.size, start_method="spawn")
    alone = _guided_prediction(None, until, timestep)
    assert (alone - _guided_prediction(None, None, timestep)).abs().max() > 1e-3
    for rank in range(plan.size):
        torch.testing.assert_close(torch.load(tmp_path / f"out.{rank}"), alone, atol=2e-5, rtol=1e-5)


def test_speech_kept_in_part_of_the_pauses_predicts_what_one_process_does_with_its_step_split(tmp_path):
    """Speech 3 = effects = music: e2 runs only for the pauses (speech 1 there), in the other branch group than e1,
    so speech's step e2 - e1, which picks the kept positions, is summed across the processes."""
    plan = ParallelPlan(ulysses=1, branches=2)
    scales = GuidanceScales(text=5.0, speech=3.0, effects=3.0, music=3.0, speech_in_pauses=1.0, speech_pause_keep=0.25)
    pauses = torch.arange(13) >= 6
    mp.start_processes(_process, args=(plan, str(tmp_path / "init"), str(tmp_path / "out"), None, 600, scales, pauses),
                       nprocs=plan.size, start_method="spawn")
    alone = _guided_prediction(None, None, 600, scales, pauses)
    uniform = _guided_prediction(None, None, 600, replace(scales, speech_pause_keep=None), pauses)
    assert (alone - uniform).abs().max() > 1e-3  # the kept share changed the prediction
    for rank in range(plan.size):
        torch.testing.assert_close(torch.load(tmp_path / f"out.{rank}"), alone, atol=2e-5, rtol=1e-5)


def _generate(tmp_path, name: str, launcher: list, *extra):
    command = [*launcher, "-m", "mtv_core", "generate", "--example", "--steps", "3", "--out", str(tmp_path / f"{name}.mp4"),
               "--work-dir", str(tmp_path / name), "--keep-segments", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


def _segments(folder: Path) -> list[dict]:
    return [load_file(path) for path in sorted(glob.glob(str(folder / "*" / "segment_*.safetensors")))]


def test_torchrun_generate_on_two_cpu_processes_matches_one(tmp_path):
    # --standalone: a free rendezvous port, not the fixed 29500 another run on the machine may hold
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    parallel = _generate(tmp_path, "parallel", torchrun, "--parallel", "ulysses=2,branches=1")
    _generate(tmp_path, "single", [sys.executable])
    assert parallel.stdout.strip().splitlines()[-1] == str(tmp_path / "parallel.mp4")  # printed by rank 0 alone
    assert parallel.stdout.count(".mp4") == 1
    split, alone = _segments(tmp_path / "parallel"), _segments(tmp_path / "single")
    assert len(split) == len(alone) == 2
    for mine, theirs in zip(split, alone):
        assert mine["kept"].shape == theirs["kept"].shape
        assert (mine["kept"].int() - theirs["kept"].int()).abs().max() <= 1

    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "parallel").glob("*/segment_*")}
    _generate(tmp_path, "parallel", torchrun, "--parallel", "ulysses=2,branches=1")  # finished segments are reused
    assert stamps == {path: path.stat().st_mtime_ns for path in (tmp_path / "parallel").glob("*/segment_*")}
