"""Loaders offer the official models they can fetch; choosing one downloads it once (from the stand-in hub) and
loads it, only where the server's operator allowed it (MTV_ALLOW_NODE_FETCH=1); listing, validating and IS_CHANGED
download nothing."""

import pytest
import torch
from sat_layout import write_sat_checkpoint

from mtv_core import testing
from mtv_core.checkpoints import save_mtv_model
from mtv_core.errors import ConfigError
from mtv_core.hub import MODELS, offer_label
from mtv_core.models import mtv_config
from nodes import comfy_adapter as comfy
from nodes import model_files
from nodes.loaders import (
    NO_T5,
    MTVDemixerLoader,
    MTVModelLoader,
    MTVVAEAndT5Loader,
    MTVWav2VecLoader,
)


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("MTV_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv(model_files.ALLOW_NODE_FETCH, raising=False)
    return tmp_path / "models"


@pytest.fixture
def node_fetch_allowed(monkeypatch):
    monkeypatch.setenv(model_files.ALLOW_NODE_FETCH, "1")


def test_loaders_list_what_they_can_fetch_after_the_installed_models(models, node_fetch_allowed):
    model_names = MTVModelLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert model_names[0] == comfy.DEMO_CHOICE
    assert model_names[1:] == [offer_label(MODELS[v]) for v in ("single", "multi", "accm")]
    assert model_names[1] == "fetch: mtv_single (BAAI/MTVCraft, ~23 GB)"
    vae_t5 = MTVVAEAndT5Loader.INPUT_TYPES()["required"]
    assert vae_t5["vae_name"][0][-1] == offer_label(MODELS["vae"])
    assert vae_t5["t5_name"][0][-2:] == [offer_label(MODELS["t5"]), NO_T5]  # appended last: saved values keep their place
    assert MTVWav2VecLoader.INPUT_TYPES()["required"]["wav2vec_name"][0][-1] == offer_label(MODELS["wav2vec2"])
    assert MTVDemixerLoader.INPUT_TYPES()["required"]["model_1"][0] == [comfy.NO_DEMIXER, offer_label(MODELS["demucs"]),
                                                                        comfy.DEMO_DEMIXER_CHOICE]
    save_mtv_model(testing.tiny_mtv_model(), models / "diffusion_models" / "mtv_single.safetensors")
    model_names = MTVModelLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert "mtv_single.safetensors" in model_names and offer_label(MODELS["single"]) not in model_names
    assert MTVVAEAndT5Loader.VALIDATE_INPUTS(offer_label(MODELS["t5"])) is not True  # a T5 label is no VAE
    assert MTVVAEAndT5Loader.VALIDATE_INPUTS(offer_label(MODELS["vae"])) is True


def test_choosing_a_fetch_entry_downloads_once_and_loads(hub, models, node_fetch_allowed, tmp_path):
    pt = tmp_path / "mp_rank_00_model_states.pt"
    sd = write_sat_checkpoint(pt, mtv_config("tiny-single"))
    hub.add("BAAI/MTVCraft", "mtv/single/1/mp_rank_00_model_states.pt", pt.read_bytes())
    wav2vec = testing.save_tiny_wav2vec2(tmp_path / "w2v")
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        hub.add("facebook/wav2vec2-base-960h", name, (wav2vec / name).read_bytes(), lfs=name.endswith(".safetensors"))
    label = offer_label(MODELS["single"])
    assert MTVModelLoader.VALIDATE_INPUTS(label) is True
    assert MTVModelLoader.IS_CHANGED(model_name=label) == label and hub.requests == []  # asking downloads nothing
    handle = MTVModelLoader().load(label, "fp32", "sdpa", 0, False, False)[0]
    expected = sd["model.diffusion_model.mixins.final_layer.linear.weight"].to(torch.bfloat16).float()
    assert torch.equal(handle.model.proj_out.weight, expected)
    assert (models / "diffusion_models" / "mtv_single.safetensors").is_file()
    downloads = len(hub.requests)
    MTVModelLoader().load(label, "fp32", "sdpa", 0, False, False)  # a queued graph still naming the label
    assert len(hub.requests) == downloads
    encoder = MTVWav2VecLoader().load(offer_label(MODELS["wav2vec2"]))[0]
    assert encoder.model.config.hidden_size == 32
    assert "wav2vec2-base-960h/" in MTVWav2VecLoader.INPUT_TYPES()["required"]["wav2vec_name"][0]


def test_without_the_operators_consent_a_fetch_entry_is_refused_and_downloads_nothing(hub, models, tmp_path):
    hub.add("facebook/wav2vec2-base-960h", "config.json", b"{}", lfs=False)
    label = offer_label(MODELS["wav2vec2"])
    refusal = ("downloading models from a workflow is off on this server; run `python -m mtv_core models fetch wav2vec2 "
               "--dest ComfyUI/models` (or start ComfyUI with MTV_ALLOW_NODE_FETCH=1)")
    assert MTVWav2VecLoader.VALIDATE_INPUTS(label) == refusal
    with pytest.raises(ConfigError) as error:
        MTVWav2VecLoader().load(label)
    assert str(error.value) == refusal
    assert hub.requests == [] and not models.exists()
    testing.save_tiny_wav2vec2(models / "audio_encoders" / "wav2vec2-base-960h")  # installed with `models fetch`
    assert MTVWav2VecLoader.VALIDATE_INPUTS(label) is True  # an old workflow naming the label loads it
    assert MTVWav2VecLoader().load(label)[0].model.config.hidden_size == 32 and hub.requests == []
