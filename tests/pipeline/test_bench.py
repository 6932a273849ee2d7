"""`python -m mtv_core bench`: MTV against plain CogVideoX on random weights, with the generate options."""

import collections
import re
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mtv_core.cli.bench.runs import encoders_on_demand, random_model
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


class NewTensorBytes(TorchDispatchMode):
    """Bytes of every non-meta tensor an operation returns, by dtype."""

    def __init__(self):
        super().__init__()
        self.bytes = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self.bytes[tensor.dtype] += tensor.numel() * tensor.element_size()
        return out


def test_a_bf16_random_model_is_made_without_a_float32_copy():
    with NewTensorBytes() as allocated:
        model = random_model(MTVTransformer3DModel, mtv_config("tiny-single"), torch.bfloat16)
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert {t.dtype for t in model.parameters()} == {torch.bfloat16}
    assert allocated.bytes[torch.bfloat16] >= size  # the counter sees the allocations
    assert allocated.bytes[torch.float32] == 0, allocated.bytes


def test_the_audio_encoders_hold_weights_one_at_a_time_and_only_while_they_run():
    model = random_model(MTVTransformer3DModel, mtv_config("tiny-multi"), torch.float32, on_demand=("audio_encoders",))
    encoders = model.audio_encoders

    def materialised():
        return sum(next(encoder.parameters()).device.type != "meta" for encoder in encoders.values())

    assert materialised() == 0 and all(p.device.type == "cpu" for p in model.transformer_blocks.parameters())
    seen = []
    handles = [encoder.proj3.register_forward_hook(lambda *_: seen.append(materialised())) for encoder in encoders.values()]
    features = torch.randn(1, 49, model.config.audio_feature_dim)
    with torch.no_grad(), encoders_on_demand(model, "cpu"):
        first = model.project_audio({name: features for name in model.audio_streams})
        again = model.project_audio({name: features for name in model.audio_streams})
    for handle in handles:
        handle.remove()
    assert seen == [1] * 8 and materialised() == 0  # speech, speech2, effects, music; twice
    assert all(torch.equal(first[name], again[name]) for name in first)  # seeded by encoder: the same weights each time
    with torch.no_grad():  # the second speaker passes through the speech encoder's same weights
        torch.testing.assert_close(first["speech"] - model.speaker_embeddings[0], first["speech2"] - model.speaker_embeddings[1])
    assert not torch.equal(first["effects"], first["music"])


def test_fbc_with_one_layer_is_refused_before_building():
    result = bench("pipeline", "--config", "tiny-single", "--layers", "1", "--cache", "fbc", "--steps", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "the first-block cache needs at least 2 transformer blocks" in result.stderr
    assert "this model has 1; use taylorseer or no cache" in result.stderr
