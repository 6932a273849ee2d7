"""`python -m trainer vae` learns to reconstruct clips; `--train` modes pick the right parameters."""

import argparse
import random
import re

import numpy as np
import pytest
import torch

from mtv_core.models import MTVTransformer3DModel, mtv_config
from trainer.cli.vae import add_arguments as vae_arguments
from trainer.params import select_trainable


def write_clip(path, frames=12, seed=0):
    from mtv_core.pipeline.video import write_mp4

    rng = np.random.default_rng(seed)
    video = np.zeros((frames, 32, 48, 3), dtype=np.uint8)
    for i in range(frames):
        colour = rng.integers(0, 255, 3)
        video[i, :, :] = colour // 3
        video[i, 8:24, 10 + i:26 + i] = colour
    write_mp4(path, torch.from_numpy(video), 24.0)


def test_vae_training_lowers_reconstruction_error(tmp_path):
    from trainer.vae import new_vae, random_batch, read_clip, train_vae, vae_loss

    (tmp_path / "clips").mkdir()
    for seed in range(2):
        write_clip(tmp_path / "clips" / f"c{seed}.mp4", seed=seed)
    args = vae_parser().parse_args(["--clips", str(tmp_path / "clips"), "--out", str(tmp_path / "vae.safetensors"),
                                    "--widths", "8", "8", "8", "8", "--steps", "30", "--batch-size", "2", "--lr", "3e-3"])
    torch.manual_seed(0)
    batch = random_batch([read_clip(p) for p in sorted((tmp_path / "clips").glob("*.mp4"))], 2, random.Random(1))
    with torch.no_grad():
        before = vae_loss(new_vae((8, 8, 8, 8)), batch)[1]
    final = train_vae(args)
    assert final < 0.5 * before

    from mtv_core.checkpoints import load_vae

    with torch.no_grad():
        after = vae_loss(load_vae(tmp_path / "vae.safetensors"), batch)[1]
    assert after < 0.5 * before


def test_decoder_only_keeps_the_latents_and_lowers_the_error(tmp_path):
    """--decoder-only: the encoder (so every latent a model was trained on) stays bit-identical; the decoder learns."""
    from mtv_core.checkpoints import load_vae, save_vae
    from trainer.errors import TrainerError
    from trainer.vae import new_vae, random_batch, read_clip, train_vae, vae_loss

    (tmp_path / "clips").mkdir()
    for seed in range(2):
        write_clip(tmp_path / "clips" / f"c{seed}.mp4", seed=seed)
    torch.manual_seed(0)
    save_vae(new_vae((8, 8, 8, 8)).eval(), tmp_path / "start.safetensors")
    common = ["--clips", str(tmp_path / "clips"), "--out", str(tmp_path / "dec.safetensors"), "--decoder-only"]
    with pytest.raises(TrainerError, match="--init"):
        train_vae(vae_parser().parse_args(common))
    train_vae(vae_parser().parse_args([*common, "--init", str(tmp_path / "start.safetensors"), "--steps", "30",
                                       "--batch-size", "2", "--lr", "3e-3"]))
    start, tuned = load_vae(tmp_path / "start.safetensors"), load_vae(tmp_path / "dec.safetensors")
    for name, value in start.encoder.state_dict().items():
        assert torch.equal(value, tuned.encoder.state_dict()[name]), name
    assert any(not torch.equal(v, tuned.decoder.state_dict()[k]) for k, v in start.decoder.state_dict().items())
    batch = random_batch([read_clip(p) for p in sorted((tmp_path / "clips").glob("*.mp4"))], 2, random.Random(1))
    with torch.no_grad():
        torch.manual_seed(1)
        before = vae_loss(start, batch)[1]
        torch.manual_seed(1)
        after = vae_loss(tuned, batch)[1]
    assert after < 0.7 * before


def write_still_clip(path, frames=12, seed=0):
    """A still picture: a square on a plain ground, nothing moves."""
    from mtv_core.pipeline.video import write_mp4

    colour = np.random.default_rng(seed).integers(40, 215, 3)
    video = np.zeros((frames, 32, 48, 3), dtype=np.uint8)
    video[:] = colour // 2
    video[:, 8:24, 10:26] = colour
    write_mp4(path, torch.from_numpy(video), 24.0)


def test_temporal_weight_makes_the_decoded_change_follow_the_clips(tmp_path):
    """--temporal-weight: given latents as noisy as a model's (--latent-noise), the decoder learns to keep a still clip
    still from frame to frame, which a plain MSE does not teach it."""
    from mtv_core.checkpoints import load_vae, save_vae
    from trainer.vae import new_vae, random_batch, read_clip, train_vae

    (tmp_path / "clips").mkdir()
    for seed in range(2):
        write_still_clip(tmp_path / "clips" / f"c{seed}.mp4", seed=seed)
    torch.manual_seed(0)
    save_vae(new_vae((8, 8, 8, 8)).eval(), tmp_path / "start.safetensors")
    batch = random_batch([read_clip(p) for p in sorted((tmp_path / "clips").glob("*.mp4"))], 2, random.Random(1))
    change_error = {}
    for weight in ("0", "20"):
        out = tmp_path / f"dec-{weight}.safetensors"
        train_vae(vae_parser().parse_args(["--clips", str(tmp_path / "clips"), "--out", str(out), "--decoder-only",
                                           "--init", str(tmp_path / "start.safetensors"), "--steps", "30",
                                           "--batch-size", "2", "--lr", "3e-3", "--temporal-weight", weight,
                                           "--latent-noise", "1"]))
        vae = load_vae(out)
        with torch.no_grad():
            latents = vae.encode(batch).latent_dist.mode()
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
            decoded = vae.decode(latents + latents.std() * noise).sample
        change_error[weight] = float((decoded.diff(dim=2) - batch.diff(dim=2)).pow(2).mean())
    assert change_error["20"] < 0.7 * change_error["0"], change_error


@pytest.mark.parametrize("option, value, message", [
    ("--window-frames", "8", r"--window-frames 8 is not 1 \+ 4k frames"),
    ("--temporal-weight", "-1", r"--temporal-weight -1.0 is out of range"),
    ("--latent-noise", "101", r"--latent-noise 101.0 is out of range"),
])
def test_vae_settings_are_checked_before_reading_clips(tmp_path, option, value, message):
    from trainer.errors import TrainerError
    from trainer.vae import train_vae

    args = vae_parser().parse_args(["--clips", str(tmp_path / "no-clips"), "--out", str(tmp_path / "v.safetensors"),
                                    option, value])
    with pytest.raises(TrainerError, match=message):
        train_vae(args)


def test_vae_loss_weighs_moving_pixels_more():
    from trainer.vae import MOTION_WEIGHT, motion_weights

    batch = torch.zeros(1, 3, 9, 8, 8)
    batch[:, :, 4:, 2, 3] = 1.0  # one pixel lights up half-way through the window
    weights = motion_weights(batch)
    assert weights.shape == (1, 1, 9, 8, 8)
    assert torch.all(weights[:, :, :, 0, 0] == 1.0)  # still pixel
    changing = weights[0, 0, :, 2, 3]
    assert torch.allclose(changing[:4], torch.tensor(1 + MOTION_WEIGHT * 5 / 9)), changing  # |0 - 5/9|
    assert torch.allclose(changing[4:], torch.tensor(1 + MOTION_WEIGHT * 4 / 9)), changing  # |1 - 5/9|


def test_train_modes_select_their_parameters():
    model = MTVTransformer3DModel(**mtv_config("tiny-single"))
    everything = {n for n, _ in model.named_parameters()}
    assert set(select_trainable(model, "all")) == everything
    official = set(select_trainable(model, "official"))
    assert "transformer_blocks.0.attn1.to_q.weight" in official and "transformer_blocks.0.norm2.norm.weight" in official
    assert "transformer_blocks.0.ff.net.0.proj.weight" not in official and "transformer_blocks.0.attn1.norm_q.weight" not in official
    assert {n for n in official if "audio" in n or "music" in n} == {n for n in everything if "audio" in n or "music" in n}
    audio = set(select_trainable(model, "audio"))
    assert audio == {n for n in everything if "audio" in n or "music" in n or "speaker" in n}


def test_frozen_streams_keep_only_their_own_pathway_fixed():
    model = MTVTransformer3DModel(**mtv_config("tiny-multi"))
    everything = {n for n, _ in model.named_parameters()}
    trained = set(select_trainable(model, "all", frozen_streams=("effects", "music")))
    frozen = everything - trained
    assert "audio_encoders.music.proj1.weight" in frozen and "transformer_blocks.1.music_adaln.weight" in frozen
    assert "audio_encoders.effects.norm_out.weight" in frozen and "transformer_blocks.0.audio_attn.effects.to_q.weight" in frozen
    assert "audio_interaction_blocks.0.norm_effects.weight" in frozen
    assert "audio_encoders.speech.proj1.weight" in trained and "transformer_blocks.0.audio_attn.speech2.to_k.weight" in trained
    assert "audio_interaction_blocks.0.attn.to_q.weight" in trained  # shared by the streams
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in frozen)
    speech = everything - set(select_trainable(model, "all", frozen_streams=("speech",)))
    assert {"speaker_embeddings", "audio_interaction_blocks.1.norm_speech.bias"} <= speech
    assert not any("effects" in n or "music" in n for n in speech)


def test_music_modulation_starts_at_zero_on_a_backbone_and_random_from_scratch(tmp_path):
    from trainer.options import TrainOptions
    from trainer.train import build_model

    official = MTVTransformer3DModel(**mtv_config("tiny-single"))
    assert all(torch.count_nonzero(block.music_adaln.weight) == 0 for block in official.transformer_blocks)
    scratch = build_model(TrainOptions(stage="basic_face", data=tmp_path, out=tmp_path, config="tiny-single"), None)
    for block in scratch.transformer_blocks:
        assert 0.015 < float(block.music_adaln.weight.detach().std()) < 0.025
        assert torch.count_nonzero(block.music_adaln.bias) == 0


def test_cumulative_stages_replay_earlier_subsets(tmp_path):
    from trainer_data import write_tiny_dataset

    from trainer.options import TrainOptions
    from trainer.train import stage_records

    data = write_tiny_dataset(tmp_path / "data")
    cumulative = stage_records(TrainOptions(stage="sound_event", data=data, out=tmp_path), "sound_event")
    only = stage_records(TrainOptions(stage="sound_event", data=data, out=tmp_path, stage_data="subset"), "sound_event")
    assert {r.id for r in only} == {"duo", "street"}
    assert {r.id for r in cumulative} == {"duo", "street", "face"}  # face is in basic_face, an earlier stage
    first = stage_records(TrainOptions(stage="basic_face", data=data, out=tmp_path), "basic_face")
    assert {r.id for r in first} == {"face"}


def test_vae_refuses_an_existing_out_before_reading_clips(tmp_path):
    from trainer.errors import TrainerError
    from trainer.vae import train_vae

    out = tmp_path / "vae.safetensors"
    out.write_bytes(b"the user's file")
    args = vae_parser().parse_args(["--clips", str(tmp_path / "no-clips"), "--out", str(out)])
    with pytest.raises(TrainerError, match=re.escape(f"{out} exists; choose another --out or pass --overwrite")):
        train_vae(args)
    assert out.read_bytes() == b"the user's file"
    assert vae_parser().parse_args(["--clips", "c", "--out", str(out), "--overwrite"]).overwrite


def vae_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    vae_arguments(parser)
    return parser
