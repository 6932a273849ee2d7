"""`models fetch` against a stand-in hub: the official checkpoint converted on the way and loaded, resumed downloads,
refused bad bytes, full disks, unknown names and incomplete repos, the T5 / wav2vec2 folders and the demixer."""

import re
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from sat_layout import write_sat_checkpoint

from mtv_core import testing
from mtv_core.checkpoints import convert_checkpoint, load_mtv_model
from mtv_core.cli import main
from mtv_core.errors import ConfigError, ModelFileError
from mtv_core.hub import download, fetch
from mtv_core.hub.fetch import fetch_models
from mtv_core.models import mtv_config
from mtv_core.models.fp8 import FP8Linear, convert_linears_to_fp8

MTV_FILE = "mtv/single/1/mp_rank_00_model_states.pt"


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A tiny official-layout checkpoint and its conversion by `python -m mtv_core convert` (bf16)."""
    folder = tmp_path_factory.mktemp("official")
    write_sat_checkpoint(folder / "mp_rank_00_model_states.pt", mtv_config("tiny-single"))
    assert convert_checkpoint(folder / "mp_rank_00_model_states.pt", folder / "reference.safetensors", dtype=torch.bfloat16).ok
    return (folder / "mp_rank_00_model_states.pt").read_bytes(), folder / "reference.safetensors"


@pytest.fixture
def mtv_hub(hub, official):
    hub.add("BAAI/MTVCraft", MTV_FILE, official[0])
    hub.add("BAAI/MTVCraft", "README.md", b"# MTV\n", lfs=False)
    return hub


def folders(tmp_path):
    return lambda folder: tmp_path / "models" / folder


def assert_same_model(path, reference):
    fetched, expected = load_mtv_model(path).state_dict(), load_mtv_model(reference).state_dict()
    assert fetched.keys() == expected.keys() and all(torch.equal(fetched[k], expected[k]) for k in expected)


def test_fetch_downloads_converts_and_the_result_loads_as_the_converter_makes_it(mtv_hub, official, tmp_path):
    said = []
    [path] = fetch_models(["single"], folders(tmp_path), say=said.append)
    assert path == tmp_path / "models" / "diffusion_models" / "mtv_single.safetensors"
    assert_same_model(path, official[1])
    assert load_mtv_model(path).config["variant"] == "single"
    assert [p.name for p in path.parent.iterdir()] == ["mtv_single.safetensors"]  # the download folder is gone
    assert any("peak memory" in line for line in said)
    downloads = len(mtv_hub.requests)
    said.clear()
    assert fetch_models(["single"], folders(tmp_path), say=said.append) == [path]
    assert said == [f"single: already installed at {path}, skipped"] and len(mtv_hub.requests) == downloads


def test_fp8_fetch_stores_fp8_blocks_that_load_as_the_fp8_option_makes_them(mtv_hub, official, tmp_path):
    [path] = fetch_models(["single"], folders(tmp_path), dtype="fp8", say=lambda line: None)
    assert path.name == "mtv_single_fp8.safetensors"
    model = load_mtv_model(path)
    assert isinstance(model.transformer_blocks[0].attn1.to_q, FP8Linear)
    expected = load_mtv_model(official[1])
    convert_linears_to_fp8(expected.transformer_blocks)
    fetched, reference = model.state_dict(), expected.state_dict()
    assert fetched.keys() == reference.keys()
    assert all(torch.equal(fetched[k].float(), reference[k].float()) for k in reference)


def test_a_cut_connection_is_resumed_with_a_range_request(mtv_hub, official, tmp_path):
    mtv_hub.cut_once.add(MTV_FILE)
    [path] = fetch_models(["single"], folders(tmp_path), say=lambda line: None)
    assert mtv_hub.ranges(MTV_FILE)[0] is None and re.fullmatch(r"bytes=\d+-", mtv_hub.ranges(MTV_FILE)[1])
    assert_same_model(path, official[1])


def test_a_stopped_run_is_resumed_by_the_next_one(mtv_hub, official, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "ATTEMPTS", 1)
    mtv_hub.cut_once.add(MTV_FILE)
    with pytest.raises(ModelFileError, match=r"download stopped at \d+ of \d+ bytes .*run the same fetch again to resume"):
        fetch_models(["single"], folders(tmp_path), say=lambda line: None)
    [partial] = (tmp_path / "models" / "diffusion_models" / ".mtv_single.safetensors.fetch").iterdir()
    kept = partial.stat().st_size
    assert 0 < kept < len(official[0]) and not (tmp_path / "models" / "diffusion_models" / "mtv_single.safetensors").exists()
    [path] = fetch_models(["single"], folders(tmp_path), say=lambda line: None)
    assert mtv_hub.ranges(MTV_FILE)[-1] == f"bytes={kept}-"
    assert_same_model(path, official[1])


def test_bytes_that_do_not_match_the_hub_sha256_are_removed_and_refused(mtv_hub, official, tmp_path):
    import hashlib

    mtv_hub.corrupt.add(MTV_FILE)
    with pytest.raises(ModelFileError) as error:
        fetch_models(["single"], folders(tmp_path), say=lambda line: None)
    message = str(error.value)
    assert "\n" not in message and MTV_FILE in message and hashlib.sha256(official[0]).hexdigest() in message
    assert "the bad copy was removed" in message
    target = tmp_path / "models" / "diffusion_models"
    assert [p.name for p in target.rglob("*") if p.is_file()] == []


def test_a_full_disk_is_refused_before_anything_is_written(mtv_hub, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ConfigError, match=r"not enough disk space in .*: fetching single needs .* MB \(downloads and "
                                          r"converted files\) but 0 MB is free; free some space or choose another models folder"):
        fetch_models(["single"], folders(tmp_path), say=lambda line: None)
    assert mtv_hub.ranges(MTV_FILE) == [] and not (tmp_path / "models").exists()


def test_an_unknown_name_is_named_with_the_choices(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"unknown model 'singel'; choose from single, multi, accm, vae, t5, wav2vec2, demucs, all-single"):
        fetch_models(["singel"], folders(tmp_path))
    assert main(["models", "fetch", "singel", "--dest", str(tmp_path)]) == 1
    assert "unknown model 'singel'" in capsys.readouterr().err


def test_a_repo_without_the_expected_file_is_one_line(hub, tmp_path):
    hub.add("BAAI/MTVCraft", "mtv/single/1/other.pt", b"x")
    with pytest.raises(ModelFileError) as error:
        fetch_models(["single"], folders(tmp_path), say=lambda line: None)
    assert "\n" not in str(error.value)
    assert "BAAI/MTVCraft folder mtv/single/1/ lacks mp_rank_00_model_states.pt (it holds: other.pt)" in str(error.value)
    with pytest.raises(ModelFileError, match="could not list .*/THUDM/CogVideoX-5b-I2V folder vae/: .*404") as error:
        fetch_models(["vae"], folders(tmp_path), say=lambda line: None)
    assert "\n" not in str(error.value)


def add_folder(hub, repo, folder: Path, into: str, names=None):
    for file in sorted(folder.iterdir()):
        if names is None or file.name in names:
            hub.add(repo, f"{into}/{file.name}".lstrip("/"), file.read_bytes(), lfs=file.suffix == ".safetensors")


def test_wav2vec2_and_t5_install_as_folders_their_loaders_read(hub, tmp_path):
    from mtv_core.checkpoints import load_text_encoder, load_wav2vec2

    wav2vec = testing.save_tiny_wav2vec2(tmp_path / "w2v")
    add_folder(hub, "facebook/wav2vec2-base-960h", wav2vec, "")
    t5 = testing.save_tiny_t5(tmp_path / "t5")
    weights = {"config.json", *(p.name for p in t5.glob("*.safetensors"))}
    add_folder(hub, "THUDM/CogVideoX-5b-I2V", t5, "text_encoder", weights)
    add_folder(hub, "THUDM/CogVideoX-5b-I2V", t5, "tokenizer", {p.name for p in t5.iterdir()} - weights)
    w2v_path, t5_path = fetch_models(["wav2vec2", "t5"], folders(tmp_path), say=lambda line: None)
    assert w2v_path == tmp_path / "models" / "audio_encoders" / "wav2vec2-base-960h"
    assert sorted(p.name for p in w2v_path.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert load_wav2vec2(w2v_path).model.config.hidden_size == 32
    fetched, source = (load_text_encoder(p, dtype=torch.float32) for p in (t5_path, t5))
    assert torch.equal(fetched.encode(["a cat"]), source.encode(["a cat"]))
    assert not list(t5_path.parent.glob(".*"))


def test_the_vae_folder_installs_as_the_one_file_the_workflows_load(hub, tmp_path):
    from mtv_core.checkpoints import load_vae

    source = testing.tiny_vae(seed=3)
    source.save_pretrained(tmp_path / "vae-folder")
    add_folder(hub, "THUDM/CogVideoX-5b-I2V", tmp_path / "vae-folder", "vae")
    (path,) = fetch_models(["vae"], folders(tmp_path), say=lambda line: None)
    assert path == tmp_path / "models" / "vae" / "cogvideox5b_vae.safetensors" and path.is_file()
    fetched = load_vae(path)
    assert all(torch.equal(fetched.state_dict()[name], tensor) for name, tensor in source.state_dict().items())
    assert not list(path.parent.glob(".*"))  # the download folder is gone


def test_the_demixer_comes_through_demucs_own_loader(tmp_path, monkeypatch):
    from fractions import Fraction

    import demucs.pretrained
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    from mtv_core.checkpoints import read_demixer_file

    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], channels=8, depth=4, segment=Fraction(4), t_layers=1)
    monkeypatch.setattr(demucs.pretrained, "get_model", lambda name: BagOfModels([model]) if name == "htdemucs" else None)
    [path] = fetch_models(["demucs"], folders(tmp_path), say=lambda line: None)
    assert path == tmp_path / "models" / "demucs" / "htdemucs.safetensors"
    stored = read_demixer_file(path).state
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())


def test_models_list_names_every_model_and_the_manual_cdx23_download(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("single", "multi", "accm", "vae", "t5", "wav2vec2", "demucs", "all-single"))
    assert "97d170e1" in out and "convert-demixer" in out


def test_nothing_is_fetched_without_a_name(hub, tmp_path):
    assert fetch_models([], folders(tmp_path)) == [] and hub.requests == []


def test_a_conversion_read_in_blocks_of_a_few_rows_writes_the_same_file(official, tmp_path, monkeypatch):
    from mtv_core.checkpoints import files

    source = tmp_path / "mp_rank_00_model_states.pt"
    source.write_bytes(official[0])
    monkeypatch.setattr(files, "BLOCK_BYTES", 256)  # a few rows per block: the qkv rows and casts cross blocks
    assert convert_checkpoint(source, tmp_path / "blocks.safetensors", dtype=torch.bfloat16).ok
    assert (tmp_path / "blocks.safetensors").read_bytes() == official[1].read_bytes()
