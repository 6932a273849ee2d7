"""`models fetch` run twice, at once or after a crash: one fetch per target (a lock the system releases when its
process dies), partial downloads that a crashed or concurrent run cannot poison, temp files of a killed conversion
removed, and repo folders whose files share a name (T5's text_encoder/ and tokenizer/) kept apart."""

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
from collections import namedtuple

import pytest
import torch
from test_hub_fetch import MTV_FILE, add_folder, assert_same_model, folders, mtv_hub, official  # noqa: F401

from mtv_core import testing
from mtv_core.errors import ConfigError, GenerationError, ModelFileError
from mtv_core.fileio import temp_file_beside
from mtv_core.hub import MODELS
from mtv_core.hub import fetch as hub_fetch
from mtv_core.hub.fetch import fetch_models
from mtv_core.hub.registry import RepoPart

COGVIDEOX = "THUDM/CogVideoX-5b-I2V"


def quiet(line):
    pass


def installed_folder(tmp_path):
    return tmp_path / "models" / "diffusion_models"


def planted_partial(tmp_path, official, data: bytes):
    """A partial download of the official checkpoint holding `data`, where a fetch keeps it."""
    stage = installed_folder(tmp_path) / ".mtv_single.safetensors.fetch"
    stage.mkdir(parents=True)
    partial = stage / f"mp_rank_00_model_states.pt.{hashlib.sha256(official[0]).hexdigest()[:12]}.incomplete"
    partial.write_bytes(data)
    return partial


def test_a_second_fetch_of_a_model_being_fetched_is_refused_at_once(mtv_hub, official, tmp_path, monkeypatch):
    refusals, real_download = [], hub_fetch.download

    def download_while_another_fetch_starts(file, partial, report=None):
        with pytest.raises(GenerationError) as error:
            fetch_models(["single"], folders(tmp_path), say=quiet)
        refusals.append(str(error.value))
        real_download(file, partial, report)

    monkeypatch.setattr(hub_fetch, "download", download_while_another_fetch_starts)
    [path] = fetch_models(["single"], folders(tmp_path), say=quiet)
    lock = installed_folder(tmp_path) / ".mtv_single.safetensors.fetch.lock"
    assert refusals == [f"another fetch of {path} is running (it holds the lock {lock}); wait for it to finish, then "
                        "run this fetch again: it skips what is installed"]
    assert len(mtv_hub.ranges(MTV_FILE)) == 1 and mtv_hub.ranges(MTV_FILE)[0] is None
    assert_same_model(path, official[1])
    assert [p.name for p in installed_folder(tmp_path).iterdir()] == ["mtv_single.safetensors"]  # the lock is gone


def test_a_lock_left_by_a_killed_fetch_does_not_block_the_next_one(mtv_hub, official, tmp_path):
    folder = installed_folder(tmp_path)
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from mtv_core.fileio import FolderLock; "
         "held = FolderLock(sys.argv[1], 'fetch', name='.mtv_single.safetensors.fetch.lock'); "
         "print('held', flush=True); time.sleep(120)", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(GenerationError, match=r"another fetch of .*mtv_single.safetensors is running"):
            fetch_models(["single"], folders(tmp_path), say=quiet)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (folder / ".mtv_single.safetensors.fetch.lock").exists()  # kill -9 left the file, not the lock
    [path] = fetch_models(["single"], folders(tmp_path), say=quiet)
    assert_same_model(path, official[1])


def test_a_partial_longer_than_the_file_is_discarded_and_downloaded_again(mtv_hub, official, tmp_path):
    planted_partial(tmp_path, official, official[0] * 2)  # what two runs appending to one partial make
    [path] = fetch_models(["single"], folders(tmp_path), say=quiet)
    assert mtv_hub.ranges(MTV_FILE) == [None]  # from the start, not resumed
    assert_same_model(path, official[1])


def test_a_poisoned_partial_fails_one_fetch_and_the_next_starts_clean(mtv_hub, official, tmp_path):
    partial = planted_partial(tmp_path, official, b"\0" * (len(official[0]) // 2))  # a prefix of other bytes
    with pytest.raises(ModelFileError, match="the bad copy was removed"):
        fetch_models(["single"], folders(tmp_path), say=quiet)
    assert not partial.exists()
    [path] = fetch_models(["single"], folders(tmp_path), say=quiet)
    assert mtv_hub.ranges(MTV_FILE)[-1] is None
    assert_same_model(path, official[1])


def test_temp_files_a_killed_conversion_left_are_removed_and_other_files_kept(mtv_hub, official, tmp_path):
    folder = installed_folder(tmp_path)
    fd, orphan = temp_file_beside(folder / "mtv_single.safetensors")  # what atomic_write leaves on a kill -9
    os.close(fd)
    others = [".mtv_multi.safetensors.abcd1234.tmp", ".mtv_single.safetensors.abcd12345.tmp",
              ".mtv_single.safetensors.abcd1234.tmp.keep", "mtv_single.safetensors.abcd1234.tmp", "notes.txt"]
    for name in others:
        (folder / name).write_bytes(b"x")
    said = []
    [path] = fetch_models(["single"], folders(tmp_path), say=said.append)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*others, "mtv_single.safetensors"])
    assert any(os.path.basename(orphan) in line and "left by a stopped run" in line for line in said)
    assert_same_model(path, official[1])


def test_the_space_a_killed_conversion_left_counts_as_free(mtv_hub, official, tmp_path, monkeypatch):
    fd, orphan = temp_file_beside(installed_folder(tmp_path) / "mtv_single.safetensors")
    os.truncate(fd, 10**9)
    os.close(fd)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(hub_fetch.shutil, "disk_usage", lambda path: usage(2 * 10**9, 2 * 10**9 - 1000, 1000))
    [path] = fetch_models(["single"], folders(tmp_path), say=quiet)
    assert path.is_file() and not os.path.exists(orphan)


def add_t5_with_two_configs(hub, tmp_path):
    t5 = testing.save_tiny_t5(tmp_path / "t5")
    weights = {"config.json", *(p.name for p in t5.glob("*.safetensors"))}
    add_folder(hub, COGVIDEOX, t5, "text_encoder", weights)
    add_folder(hub, COGVIDEOX, t5, "tokenizer", {p.name for p in t5.iterdir()} - weights)
    tokenizer_config = b'{"model_type": "t5", "what": "the tokenizer folder\'s own config"}'
    hub.add(COGVIDEOX, "tokenizer/config.json", tokenizer_config, lfs=False)
    return t5, tokenizer_config


def test_t5_keeps_the_text_encoder_and_tokenizer_folders_apart(hub, tmp_path, monkeypatch):
    from mtv_core.checkpoints import load_text_encoder
    from nodes import model_files

    t5, tokenizer_config = add_t5_with_two_configs(hub, tmp_path)
    [path] = fetch_models(["t5"], folders(tmp_path), say=quiet)
    assert (path / "text_encoder" / "config.json").read_bytes() == (t5 / "config.json").read_bytes()
    assert (path / "tokenizer" / "config.json").read_bytes() == tokenizer_config
    assert sorted(p.name for p in path.iterdir()) == ["text_encoder", "tokenizer"]
    fetched, source = (load_text_encoder(p, dtype=torch.float32) for p in (path, t5))  # a flat folder still loads
    assert torch.equal(fetched.encode(["a cat"]), source.encode(["a cat"]))
    monkeypatch.setenv("MTV_MODELS_DIR", str(tmp_path / "models"))
    assert model_files.list_model_files("text_encoders")[-1:] == ["t5-v1_1-xxl/"]  # one entry, not its two subfolders


def test_the_tokenizer_config_is_checked_against_the_hub(hub, tmp_path):
    add_t5_with_two_configs(hub, tmp_path)
    hub.corrupt.add("tokenizer/config.json")
    with pytest.raises(ModelFileError, match=f"{COGVIDEOX}/tokenizer/config.json: the download does not match"):
        fetch_models(["t5"], folders(tmp_path), say=quiet)


def test_two_repo_files_installed_at_one_path_are_refused(hub, tmp_path, monkeypatch):
    add_t5_with_two_configs(hub, tmp_path)
    merged = dataclasses.replace(MODELS["t5"], parts=(RepoPart("text_encoder"), RepoPart("tokenizer")))
    monkeypatch.setitem(MODELS, "t5", merged)
    with pytest.raises(ConfigError) as error:
        fetch_models(["t5"], folders(tmp_path), say=quiet)
    assert str(error.value) == (f"t5: {COGVIDEOX} files text_encoder/config.json and tokenizer/config.json would both "
                                "be installed as t5-v1_1-xxl/config.json; give their RepoParts different `into` "
                                "folders in mtv_core/hub/registry.py")
    assert hub.requests == [] and not (tmp_path / "models").exists()
