"""Loading converted files, and the errors for files that are not what they should be."""

import collections
import shutil

import pytest
import torch
from safetensors.torch import save_file
from sat_layout import sat_state_dict

from mtv_core.checkpoints import convert_checkpoint, load_mtv_model, save_safetensors
from mtv_core.errors import ModelFileError
from mtv_core.models import mtv_config


def test_loads_into_dtype_without_touching_other_values(sat_single):
    _, sd, converted = sat_single
    model = load_mtv_model(converted, dtype=torch.bfloat16)
    assert model.proj_out.weight.dtype == torch.bfloat16
    expected = sd["model.diffusion_model.mixins.final_layer.linear.weight"].to(torch.bfloat16)
    assert torch.equal(model.proj_out.weight, expected)
    assert not any(p.is_meta for p in model.parameters())


def test_converter_keeps_checkpoint_dtype_and_can_cast(tmp_path):
    config = mtv_config("tiny-single")
    sd = {k: v.to(torch.bfloat16) for k, v in sat_state_dict(config).items()}
    torch.save({"module": sd}, tmp_path / "bf16.pt")
    convert_checkpoint(tmp_path / "bf16.pt", tmp_path / "a.safetensors")
    convert_checkpoint(tmp_path / "bf16.pt", tmp_path / "b.safetensors", dtype=torch.float32)
    assert load_mtv_model(tmp_path / "a.safetensors").proj_out.weight.dtype == torch.bfloat16
    assert load_mtv_model(tmp_path / "b.safetensors").proj_out.weight.dtype == torch.float32


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("this is not a model")
    with pytest.raises(ModelFileError, match="notes.safetensors.*not a safetensors file"):
        load_mtv_model(path)


def test_truncated_file(sat_single, tmp_path):
    path = tmp_path / "cut.safetensors"
    data = sat_single[2].read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError, match="cut.safetensors: truncated"):
        load_mtv_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="nowhere.safetensors: no such file"):
        load_mtv_model(tmp_path / "nowhere.safetensors")


def test_plain_cogvideox_checkpoint_is_named_as_such(tmp_path):
    from diffusers import CogVideoXTransformer3DModel

    from mtv_core.models import backbone_config

    plain = CogVideoXTransformer3DModel(**backbone_config(mtv_config("tiny-single")))
    path = tmp_path / "cogvideox.safetensors"
    save_file(plain.state_dict(), path)
    with pytest.raises(ModelFileError, match="cogvideox.safetensors: this is a plain CogVideoX transformer"):
        load_mtv_model(path)


def test_variant_mismatch(sat_single):
    with pytest.raises(ModelFileError, match="mtv_single.safetensors: this is an MTV 'single' model but 'multi'"):
        load_mtv_model(sat_single[2], variant="multi")
    assert load_mtv_model(sat_single[2], variant="accm").config.variant == "single"  # same architecture


def test_file_that_does_not_match_its_config(sat_single, tmp_path):
    model = load_mtv_model(sat_single[2])
    state = {k: v for k, v in model.state_dict().items() if k != "audio_interaction_blocks.1.norm_ff.weight"}
    path = tmp_path / "partial.safetensors"
    save_safetensors(path, state, dict(model.config), "mtv-transformer")
    with pytest.raises(ModelFileError, match="partial.safetensors: does not match its own config: missing audio_interaction_blocks.1.norm_ff.weight"):
        load_mtv_model(path)
    state = {k: v for k, v in model.state_dict().items() if "audio_interaction_blocks.1." not in k}
    save_safetensors(path, state, dict(model.config), "mtv-transformer")
    with pytest.raises(ModelFileError, match="partial.safetensors: its config says audio_interaction_layers = 2 but the file holds 1"):
        load_mtv_model(path)


class Payload:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-mtv-test",))


def test_converter_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"module": {"model.diffusion_model.x": torch.zeros(1)}, "hook": Payload()}, path)
    with pytest.raises(ModelFileError, match="evil.pt: refused to unpickle"):
        convert_checkpoint(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_converter_accepts_deepspeed_extras(tmp_path):
    """DeepSpeed saves param_shapes (OrderedDict of torch.Size) and plain config dicts beside the weights."""
    config = mtv_config("tiny-single")
    sd = sat_state_dict(config)
    extras = {"param_shapes": [collections.OrderedDict(a=torch.Size([2, 3]))], "ds_config": {"zero_optimization": {"stage": 2}}}
    torch.save({"module": sd, **extras}, tmp_path / "ds.pt")
    assert convert_checkpoint(tmp_path / "ds.pt", tmp_path / "ds.safetensors").ok


def test_converter_names_unknown_keys_and_writes_nothing(tmp_path):
    config = mtv_config("tiny-single")
    sd = sat_state_dict(config)
    sd["model.diffusion_model.transformer.layers.0.audio_gate.weight"] = torch.zeros(3)
    del sd["model.diffusion_model.transformer.layers.1.audio_attn_effect.dense.bias"]
    torch.save({"module": sd}, tmp_path / "odd.pt")
    report = convert_checkpoint(tmp_path / "odd.pt", tmp_path / "odd.safetensors")
    assert "transformer.layers.0.audio_gate.weight" in report.unexpected
    assert "transformer_blocks.1.audio_attn.effects.to_out.0.bias" in report.missing
    assert not (tmp_path / "odd.safetensors").exists()


def test_not_an_mtv_checkpoint(tmp_path):
    torch.save({"state_dict": {"something.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="other.pt: not an official MTV checkpoint"):
        convert_checkpoint(tmp_path / "other.pt", tmp_path / "o.safetensors")


def sat_vae_state_dict(vae) -> dict:
    """diffusers -> SAT names (the inverse of the documented VAE renames), for a synthetic 3d-vae.pt."""
    import re

    n_up = len(vae.decoder.up_blocks)
    out = {}
    for key, value in vae.state_dict().items():
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.", lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.", key)
        name = re.sub(r"encoder\.down_blocks\.", "encoder.down.", name)
        name = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
        name = name.replace(".resnets.", ".block.").replace("downsamplers.0", "downsample").replace("upsamplers.0", "upsample")
        out[name.replace("conv_shortcut", "nin_shortcut")] = value
    out["loss.logvar"] = torch.zeros(1)
    return out


def test_vae_converts_from_sat_layout(tmp_path):
    from diffusers import AutoencoderKLCogVideoX

    from mtv_core.checkpoints.files import read_config

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 16, 16), down_block_types=("CogVideoXDownBlock3D",) * 4,
                                 up_block_types=("CogVideoXUpBlock3D",) * 4, latent_channels=16, layers_per_block=1,
                                 norm_num_groups=4, scaling_factor=0.7)
    torch.save({"state_dict": sat_vae_state_dict(vae)}, tmp_path / "3d-vae.pt")
    report = convert_checkpoint(tmp_path / "3d-vae.pt", tmp_path / "vae.safetensors")
    assert report.ok, report.lines()
    config = read_config(tmp_path / "vae.safetensors")
    assert config["block_out_channels"] == [8, 8, 16, 16] and config["scaling_factor"] == 0.7
    from safetensors.torch import load_file

    rebuilt = AutoencoderKLCogVideoX(**config)
    rebuilt.load_state_dict(load_file(tmp_path / "vae.safetensors"), strict=True)
    for key, value in vae.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
