"""`python -m mtv_core bench`: MTV against plain CogVideoX on random weights, with the generate options."""

import re
import subprocess
import sys
from pathlib import Path

import torch

from mtv_core.bench import random_model
from mtv_core.models import MTVTransformer3DModel, mtv_config

ROOT = Path(__file__).resolve().parents[2]


def bench(*args):
    result = subprocess.run([sys.executable, "-m", "mtv_core", "bench", *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return result


def test_pipeline_bench_reports_steps_memory_and_the_ratio():
    result = bench("pipeline", "--config", "tiny-single", "--steps", "6", "--dtype", "fp32", "--cache", "taylorseer:2",
                   "--block-swap", "1", "--fp8")
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(mtv|cogvideox) +([\d.]+) s/step \(first step ([\d.]+) s\) +peak RSS growth +([\d.]+) GiB +"
                      r"attention skipped (\d+)%$", result.stdout, re.M)
    assert [row[0] for row in rows] == ["mtv", "cogvideox"], result.stdout
    assert all(float(row[1]) > 0 for row in rows)
    assert [row[4] for row in rows] == ["33", "33"]  # steps 0, 1, 3, 5 of 6 computed
    ratio = re.search(r"ratio mtv/cogvideox: time ([\d.]+)x, memory ([\d.]+)x", result.stdout)
    assert ratio and float(ratio[1]) > 0


def test_model_bench_times_one_forward_of_each_and_one_block_inside_it():
    result = bench("model", "--config", "tiny-single", "--layers", "1", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    for name in ("mtv", "cogvideox"):
        match = re.search(rf"^{name} +([\d.]+) ms/forward \(([\d.]+) ms in one transformer block\)", result.stdout, re.M)
        assert match and 0 < float(match[2]) < float(match[1]), result.stdout
    assert re.search(r"per transformer block [\d.]+x", result.stdout)
    assert re.search(r"at the full 2 layers .*: time [\d.]+x", result.stdout)


def test_bad_options_are_refused_before_building():
    result = bench("pipeline", "--config", "official-5b-single", "--cache", "fbc:7")
    assert result.returncode == 1 and "must be in 0.001..1" in result.stderr and "Traceback" not in result.stderr


def test_random_models_are_finite_and_seeded():
    config = mtv_config("tiny-single")
    first, second = random_model(MTVTransformer3DModel, config, torch.float32), random_model(MTVTransformer3DModel, config, torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert all(torch.isfinite(p).all() and p.std() > 0.01 for p in first.parameters() if p.numel() > 100)
