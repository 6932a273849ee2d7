"""The training loop: loss falls, exact resume, the curriculum, checkpoints and bad input."""

import errno
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file
from trainer_data import REPO, killed_at_step, trainer_command, write_tiny_dataset

from mtv_core.checkpoints import load_mtv_model
from trainer import CheckpointWriteError, TrainerError, checkpoints
from trainer.dataset import ClipDataset, collate, read_manifest
from trainer.objective import ConditioningDropout, DiffusionObjective, official_alphas_cumprod
from trainer.stages import STAGE_ORDER
from trainer.options import TrainOptions
from trainer.train import run_curriculum

NO_DROPOUT = ConditioningDropout(text=0.0, audio=0.0, per_stream=0.0, clean_mask=0.0)


def options(data, out, **changes):
    settings = dict(stage="basic_face", data=data, out=out, config="tiny-single", steps=4, save_every=2, progress=False, seed=3)
    return TrainOptions(**{**settings, **changes})


def fixed_loss(model, data, subset) -> float:
    """The objective on every clip of `subset` with fixed noise and timesteps 100..900."""
    records = [r for r in read_manifest(data) if subset in r.subsets]
    batch = collate([ClipDataset(data, records, model.audio_streams)[i] for i in range(len(records))])
    objective = DiffusionObjective(model, official_alphas_cumprod())
    generator = torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad():
        for t in (100, 300, 500, 700, 900):
            noise = torch.randn(batch["latents"].shape, generator=generator)
            size, frames = batch["latents"].shape[:2]
            total += float(objective(batch["latents"], batch["text"], batch["features"], torch.full((size,), t),
                                     torch.zeros(size, frames, dtype=torch.bool), noise))
    return total / 5


def test_loss_falls_when_overfitting_two_clips(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", {"a": ["basic_face"], "b": ["basic_face"], "c": ["visual_mood"]})
    torch.manual_seed(3)
    from mtv_core.models import MTVTransformer3DModel, mtv_config

    before = fixed_loss(MTVTransformer3DModel(**mtv_config("tiny-single")), data, "basic_face")
    (output,) = run_curriculum(options(data, tmp_path / "run", stage="basic_face", steps=20, save_every=20, lr=3e-3, grad_clip=1.0,
                                       lr_schedule="constant", dropout=NO_DROPOUT))
    after = fixed_loss(load_mtv_model(output), data, "basic_face")
    assert after < 0.85 * before, (before, after)


def test_killed_run_resumes_to_the_same_parameters(tmp_path, monkeypatch):
    data = write_tiny_dataset(tmp_path / "data")
    common = dict(stage="basic_face", steps=4, save_every=2, ema=0.9, lr=1e-3)
    (reference,) = run_curriculum(options(data, tmp_path / "straight", **common))

    with pytest.raises(KeyboardInterrupt), killed_at_step(4):
        run_curriculum(options(data, tmp_path / "resumed", **common))
    assert (tmp_path / "resumed/basic_face/checkpoints/latest").read_text() == "step-00000002"
    (resumed,) = run_curriculum(options(data, tmp_path / "resumed", resume=True, **common))

    for name in ("model.safetensors", "model-ema.safetensors"):
        expected, got = load_file(reference.parent / name), load_file(resumed.parent / name)
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
    trained = load_file(reference)["transformer_blocks.0.attn1.to_q.weight"]
    initial = load_file(tmp_path / "straight/basic_face/checkpoints/step-00000002/model.safetensors")
    assert not torch.equal(trained, initial["transformer_blocks.0.attn1.to_q.weight"])


def test_stage_all_chains_every_stage(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    outputs = run_curriculum(options(data, tmp_path / "run", stage="all", steps=1, save_every=1, keep=1, train="audio"))
    assert outputs == [tmp_path / "run" / stage / "model.safetensors" for stage in STAGE_ORDER]
    previous = None
    for output in outputs:
        model = load_mtv_model(output)
        weights = model.state_dict()
        if previous is not None:
            # Each stage starts from the last: frozen backbone weights carry over unchanged, audio ones move on.
            assert torch.equal(weights["proj_out.weight"], previous["proj_out.weight"])
            assert not torch.equal(weights["audio_encoders.speech.proj1.weight"], previous["audio_encoders.speech.proj1.weight"])
        previous = weights
        assert [p.name for p in (output.parent / "checkpoints").glob("step-*")] == ["step-00000001"]
    assert "stage visual_mood step 1" in (tmp_path / "run/train.log").read_text()


def test_cli_freeze_streams_leaves_their_weights_untouched(tmp_path):
    from mtv_core.models import MTVTransformer3DModel, mtv_config
    from mtv_core.checkpoints import save_mtv_model

    data = write_tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    save_mtv_model(MTVTransformer3DModel(**mtv_config("tiny-single")), tmp_path / "init.safetensors")
    subprocess.run(trainer_command("--stage", "basic_face", "--data", data, "--out", tmp_path / "run", "--init",
                                   tmp_path / "init.safetensors", "--train", "all", "--steps", 3, "--lr", 1e-2,
                                   "--freeze-streams", "effects", "music", "--no-progress"),
                   check=True, cwd=REPO, capture_output=True)
    initial, final = load_file(tmp_path / "init.safetensors"), load_file(tmp_path / "run/basic_face/model.safetensors")
    moved = {key for key in final if not torch.equal(final[key], initial[key])}
    assert "audio_encoders.speech.proj1.weight" in moved and "proj_out.weight" in moved
    assert not any("music" in key or "effects" in key for key in moved), sorted(moved)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    data = write_tiny_dataset(tmp_path / "data")
    real_save = checkpoints.save_safetensors
    calls = []

    def failing_save(path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_safetensors", failing_save)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*step-00000002.*intact"):
        run_curriculum(options(data, tmp_path / "run"))
    folder = tmp_path / "run/basic_face/checkpoints"
    assert (folder / "latest").read_text() == "step-00000002"
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step-00000002"]
    load_mtv_model(folder / "step-00000002/model.safetensors")
    assert torch.load(folder / "step-00000002/state.pt", weights_only=True)["step"] == 2


def test_stage_without_clips_fails_with_a_clear_message(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", {"street": ["sound_event", "visual_mood"]})
    with pytest.raises(TrainerError, match=r"no clip in subset 'multi_character'.*'sound_event': 1"):
        run_curriculum(options(data, tmp_path / "run", stage="multi_character"))


def test_cli_rejects_an_init_checkpoint_of_another_variant(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    (single,) = run_curriculum(options(data, tmp_path / "run", steps=1, save_every=1))
    result = subprocess.run(trainer_command("--stage", "single_character", "--data", data, "--out", tmp_path / "run2",
                                            "--init", single, "--config", "tiny-multi", "--steps", "1"),
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert result.returncode == 1
    assert "error: --init" in result.stderr and "not a 'tiny-multi' model" in result.stderr
    assert "multi_speaker: checkpoint False, config True" in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_videos_every_k_steps(tmp_path):
    import av

    from mtv_core import testing
    from mtv_core.checkpoints import save_vae

    data = write_tiny_dataset(tmp_path / "data")
    vae = save_vae(testing.tiny_vae(), tmp_path / "vae.safetensors")
    run_curriculum(options(data, tmp_path / "run", stage="basic_face", steps=4, save_every=4, sample_every=2,
                           sample_vae=vae, sample_steps=2))
    samples = sorted((tmp_path / "run" / "basic_face" / "samples").glob("*.mp4"))
    assert [p.name for p in samples] == ["step-000002.mp4", "step-000004.mp4"]
    with av.open(str(samples[0])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 49
