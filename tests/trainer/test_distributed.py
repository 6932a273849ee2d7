"""Two processes through `accelerate launch` (DDP, gloo, CPU) train one stage to a loadable output.

`accelerate launch --cpu` starts a single process (its multi-CPU path needs MPI), so the test uses the
torchrun launcher (`--multi_gpu`) with no GPU visible; the trainer then joins the processes over gloo."""

import os
import subprocess
import sys

from trainer_data import REPO, write_tiny_dataset

from mtv_core.checkpoints import load_mtv_model


def test_two_process_accelerate_launch_on_cpu(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer", "--stage", "sound_event", "--init",
               "none", "--data", data, "--out", tmp_path / "run", "--config", "tiny-single", "--steps", "3", "--save-every", "2",
               "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(list(map(str, command)), cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "run/train.log").read_text()
    assert "2 process(es) on cpu" in log and "stage sound_event step 3" in log
    assert sorted(p.name for p in (tmp_path / "run/sound_event/checkpoints").iterdir()) == ["latest", "step-00000002", "step-00000003"]
    load_mtv_model(tmp_path / "run/sound_event/model.safetensors")
