"""Two processes on the CPU (gloo) under each engine the shipped accelerate configs ask for: DDP, FSDP2 and
DeepSpeed ZeRO-2. A run killed (SIGKILL) after a checkpoint and resumed ends where an uninterrupted run does.

`accelerate launch --cpu` starts a single process (its multi-CPU path needs MPI), so the DDP test uses the torchrun
launcher (`--multi_gpu`) with no GPU visible; the trainer then joins the processes over gloo."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file
from trainer_data import REPO, plant, write_tiny_dataset

from mtv_core.checkpoints import load_mtv_model

ENGINES = {
    "ddp": (["--multi_gpu"], "DDP over 2 process(es) on cpu (gloo)"),
    "fsdp2": (["--config_file", "trainer/configs/fsdp.yaml"], "FSDP2 over 2 process(es) on cpu (gloo)"),
    "zero2": (["--config_file", "trainer/configs/deepspeed_zero2.yaml"], "DeepSpeed ZeRO-2 over 2 process(es) on cpu (gloo)"),
}
STEPS = 12


PORT_TAKEN = ("EADDRINUSE", "address already in use", "another process is utilizing it")
LAUNCH_TRIES = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(engine: str, data, out, *extra) -> list[str]:
    """The launch command with a port free now; another process may take it before the launcher binds it, so the
    callers launch again on another port when the launcher says it was taken."""
    return [sys.executable, "-m", "accelerate.commands.launch", *ENGINES[engine][0], "--num_processes", "2",
            "--main_process_port", str(free_port()), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", *trainer_args(data, out, *extra)]


def port_was_taken(stderr: str) -> bool:
    return any(words in stderr for words in PORT_TAKEN)


def trainer_args(data, out, *extra) -> list[str]:
    return ["-m", "trainer", "--stage", "sound_event", "--init", "none", "--data", str(data), "--out", str(out), "--config", "tiny-single",
            "--steps", str(STEPS), "--save-every", "3", "--log-every", "1", "--ema", "0.9", "--lr", "1e-3",
            "--no-progress", *extra]


ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "DS_ACCELERATOR": "cpu"}


def launched(engine: str, data, out, *extra) -> subprocess.CompletedProcess:
    for _ in range(LAUNCH_TRIES):
        result = subprocess.run(launch(engine, data, out, *extra), cwd=REPO, env=ENV, capture_output=True, text=True,
                                timeout=300)
        if result.returncode == 0 or not port_was_taken(result.stderr):
            return result
    return result


def run(engine: str, data, out, *extra) -> None:
    result = launched(engine, data, out, *extra)
    assert result.returncode == 0, result.stderr[-3000:]


def kill_after_first_checkpoint(engine: str, data, out) -> None:
    latest = out / "sound_event" / "checkpoints" / "latest"
    for _ in range(LAUNCH_TRIES):
        with open(out.parent / f"{out.name}.stderr", "w+") as stderr:
            process = subprocess.Popen(launch(engine, data, out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                       stderr=stderr, start_new_session=True)
            deadline = time.monotonic() + 300
            while not latest.is_file() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            stderr.seek(0)
            if latest.is_file() or process.poll() is None or not port_was_taken(stderr.read()):
                break
    launched = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in launched:
        member.kill()  # the launcher's workers run in sessions of their own: kill each one (SIGKILL)
    process.wait()
    psutil.wait_procs(launched, timeout=60)  # all gone (and their port free) before the resumed run starts
    assert latest.is_file(), "the run ended before its first checkpoint"


def losses(out) -> dict[int, str]:
    return {int(step): loss for step, loss in re.findall(r"step (\d+) loss (\S+)", (out / "train.log").read_text())}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_a_killed_run_resumes_to_where_an_uninterrupted_run_ends(tmp_path, engine):
    data = write_tiny_dataset(tmp_path / "data")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(engine, data, straight)
    kill_after_first_checkpoint(engine, data, killed)
    assert not (killed / "sound_event" / "model.safetensors").exists()
    resumed_from = int((killed / "sound_event/checkpoints/latest").read_text().removeprefix("step-"))
    assert resumed_from < STEPS
    if engine == "ddp":  # another process count is refused, and nothing is written
        alone = subprocess.run([sys.executable, *trainer_args(data, killed, "--resume")], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
        assert alone.returncode == 1 and "processes: checkpoint 2, now 1" in alone.stderr, alone.stderr[-2000:]
    refuses_a_planted_engine_file(engine, data, killed)
    run(engine, data, killed, "--resume")

    log = (killed / "train.log").read_text()
    assert ENGINES[engine][1] in log and f"resumed at step {resumed_from}" in log
    expected, got = losses(straight), losses(killed)
    assert len(expected) == STEPS and all(got[step] == expected[step] for step in range(resumed_from + 1, STEPS + 1))
    for name in ("model.safetensors", "model-ema.safetensors"):
        reference, resumed = load_file(straight / "sound_event" / name), load_file(killed / "sound_event" / name)
        assert reference.keys() == resumed.keys()
        for key in reference:
            torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=1e-7, msg=key)
    load_mtv_model(killed / "sound_event" / "model.safetensors")


def planted_target(engine: str, checkpoint) -> Path:
    """A file this engine's own loader unpickles: accelerate's custom state (DDP), the distributed checkpoint's
    .metadata (FSDP2), DeepSpeed's model states."""
    engine_dir = checkpoint / "engine"
    if engine == "ddp":
        return engine_dir / "custom_checkpoint_0.pkl"
    return next(engine_dir.rglob(".metadata" if engine == "fsdp2" else "*model_states.pt"))


def refuses_a_planted_engine_file(engine: str, data, run) -> None:
    """Under the engine itself, a planted pickle is refused before any process loads it; then the folder is
    restored for the resume that follows."""
    checkpoint = run / "sound_event/checkpoints" / (run / "sound_event/checkpoints/latest").read_text()
    target, marker = planted_target(engine, checkpoint), run.parent / "planted-code-ran"
    original = target.read_bytes() if target.exists() else None
    plant(target, marker, zipped=False)
    result = launched(engine, data, run, "--resume")
    assert result.returncode != 0 and not marker.exists(), result.stderr[-3000:]
    assert f"{target}: " in result.stderr and "--trust-checkpoint" in result.stderr, result.stderr[-3000:]
    if original is None:
        target.unlink()
    else:
        target.write_bytes(original)


@pytest.mark.parametrize("env, words", [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, "the launcher asked for FSDP but accelerate set up single process"),
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "RANK": "0",
      "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"}, "FSDP version 1 cannot run on CPUs here; use fsdp_version: 2"),
])
def test_an_engine_that_cannot_run_is_refused_before_training(tmp_path, env, words):
    data = write_tiny_dataset(tmp_path / "data")
    result = subprocess.run([sys.executable, *trainer_args(data, tmp_path / "run")], cwd=REPO, env={**ENV, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "run" / "sound_event").exists()
