"""A checkpoint folder never runs code on resume: every file must be what this machine's trainer signed, or the user
says --trust-checkpoint; even then the RNG state is required and nothing the trainer does not ask for is unpickled."""

import json
import shutil
import subprocess

import pytest
from trainer_data import REPO, killed_at_step, plant, trainer_command, write_tiny_dataset

from mtv_core.fileio import file_sha256
from trainer import TrainerError
from trainer.options import TrainOptions
from trainer.train import run_curriculum
from trainer.trust import MANIFEST, UntrustedCheckpoint, verify_folder


def options(data, out, **changes):
    settings = dict(stage="basic_face", data=data, out=out, config="tiny-single", steps=4, save_every=2,
                    progress=False, seed=3, ema=0.9)
    return TrainOptions(**{**settings, **changes})


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped after its step-2 checkpoint (kept pristine; tests work on copies)."""
    root = tmp_path_factory.mktemp("stopped")
    data = write_tiny_dataset(root / "data")
    with pytest.raises(KeyboardInterrupt), killed_at_step(4):
        run_curriculum(options(data, root / "run"))
    return data, root / "run"


@pytest.fixture
def run_copy(stopped_run, tmp_path):
    data, run = stopped_run
    shutil.copytree(run, tmp_path / "run")
    checkpoint = tmp_path / "run/basic_face/checkpoints/step-00000002"
    return data, tmp_path / "run", checkpoint


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "raw"])
@pytest.mark.parametrize("name, words", [
    ("engine/custom_checkpoint_0.pkl", "not in the folder's signed manifest"),
    ("engine/random_states_0.pkl", "changed since the trainer wrote it"),
    ("engine/optimizer.bin", "changed since the trainer wrote it"),
    ("state.pt", "changed since the trainer wrote it"),
])
def test_a_planted_pickle_is_refused_before_anything_is_loaded(run_copy, tmp_path, name, words, zipped):
    data, run, checkpoint = run_copy
    marker = tmp_path / "ran"
    plant(checkpoint / name, marker, zipped)
    with pytest.raises(UntrustedCheckpoint, match=words) as refused:
        run_curriculum(options(data, run, resume=True))
    assert str(checkpoint / name) in str(refused.value) and "--trust-checkpoint" in str(refused.value)
    assert not marker.exists()
    assert not (run / "basic_face/model.safetensors").exists()


def test_a_manifest_edited_to_list_the_planted_file_fails_its_signature(run_copy, tmp_path):
    data, run, checkpoint = run_copy
    plant(checkpoint / "engine/optimizer.bin", tmp_path / "ran", zipped=True)
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    planted = checkpoint / "engine/optimizer.bin"
    manifest["files"]["engine/optimizer.bin"] = {"size": planted.stat().st_size, "sha256": file_sha256(planted)}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UntrustedCheckpoint, match="signature does not match"):
        verify_folder(checkpoint)
    assert not (tmp_path / "ran").exists()


def test_a_folder_from_another_machine_is_refused_and_resumes_when_trusted(run_copy, tmp_path, monkeypatch):
    data, run, checkpoint = run_copy
    monkeypatch.setenv("MTV_CHECKPOINT_KEY", str(tmp_path / "other-machine.key"))
    with pytest.raises(UntrustedCheckpoint, match="no checkpoint key at"):
        run_curriculum(options(data, run, resume=True))
    (output,) = run_curriculum(options(data, run, resume=True, trust_checkpoint=True))
    assert output.is_file()


def test_trusted_folders_still_need_their_random_state(run_copy, tmp_path):
    data, run, checkpoint = run_copy
    marker = tmp_path / "ran"
    plant(checkpoint / "engine/random_states_0.pkl", marker, zipped=False)
    with pytest.raises(TrainerError, match="random_states_0.pkl: this process's random state cannot be read"):
        run_curriculum(options(data, run, resume=True, trust_checkpoint=True))
    (checkpoint / "engine/random_states_0.pkl").unlink()
    with pytest.raises(TrainerError, match="random state cannot be read .*FileNotFoundError"):
        run_curriculum(options(data, run, resume=True, trust_checkpoint=True))
    assert not marker.exists()


def test_trusted_folders_never_unpickle_a_custom_checkpoint(run_copy, tmp_path):
    data, run, checkpoint = run_copy
    plant(checkpoint / "engine/custom_checkpoint_0.pkl", tmp_path / "ran", zipped=True)
    with pytest.raises(TrainerError, match="the engine state cannot be loaded"):
        run_curriculum(options(data, run, resume=True, trust_checkpoint=True))
    assert not (tmp_path / "ran").exists()


def test_the_command_line_refuses_in_one_line(run_copy, tmp_path):
    data, run, checkpoint = run_copy
    plant(checkpoint / "engine/custom_checkpoint_0.pkl", tmp_path / "ran", zipped=True)
    result = subprocess.run(trainer_command("--stage", "basic_face", "--data", str(data), "--out", str(run),
                                            "--config", "tiny-single", "--steps", "4", "--save-every", "2",
                                            "--ema", "0.9", "--seed", "3", "--resume", "--no-progress"),
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "custom_checkpoint_0.pkl: not in the folder's signed manifest" in result.stderr
    assert not (tmp_path / "ran").exists()


def test_a_latest_pointer_out_of_the_checkpoints_folder_is_refused(run_copy):
    data, run, checkpoint = run_copy
    (checkpoint.parent / "latest").write_text("../../../elsewhere/step-00000002")
    with pytest.raises(TrainerError, match="not a step folder"):
        run_curriculum(options(data, run, resume=True))
