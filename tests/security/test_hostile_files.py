"""Malformed and lying model files, through every loader: one ModelFileError naming the file, and no allocation
beyond what the file holds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hostile_files import MALFORMED, raw_safetensors

from mtv_core import testing
from mtv_core.audio import AudioFeatures
from mtv_core.checkpoints import (
    load_demixer,
    load_mtv_model,
    load_text_encoder,
    load_vae,
    load_wav2vec2,
    save_mtv_model,
    save_vae,
)
from mtv_core.errors import ModelFileError

ROOT = Path(__file__).resolve().parents[2]
LOADERS = {"model": load_mtv_model, "vae": load_vae, "wav2vec2": load_wav2vec2, "demixer": load_demixer,
           "features": AudioFeatures.load}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_are_named_errors(tmp_path, loader, case):
    header, data, words = MALFORMED[case]
    path = raw_safetensors(tmp_path / f"{case}.safetensors", header, data)
    with pytest.raises(ModelFileError) as caught:
        LOADERS[loader](path)
    assert str(path) in str(caught.value)
    if case != "config_not_json" or loader in ("model", "vae", "wav2vec2"):  # the others keep no config
        assert words in str(caught.value), str(caught.value)


def _retag(source: Path, target: Path, change) -> Path:
    """Copy a real safetensors file, rewriting its metadata with `change(metadata)`: the tensors stay small."""
    from safetensors.torch import load_file, safe_open, save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    save_file(load_file(source), target, metadata=change(metadata))
    return target


def _config_change(key: str, **values):
    return lambda metadata: {**metadata, key: json.dumps({**json.loads(metadata[key]), **values})}


def bombs(folder: Path) -> dict:
    """Files of a few hundred KB whose configs ask for gigabytes (or for a billion modules)."""
    model = save_mtv_model(testing.tiny_mtv_model(), folder / "model.safetensors")
    vae = save_vae(testing.tiny_vae(), folder / "vae.safetensors")
    wav2vec = folder / "w2v"
    testing.save_tiny_wav2vec2(wav2vec)
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Model

    w2v_file = folder / "w2v.safetensors"
    reference = Wav2Vec2Model.from_pretrained(wav2vec)
    save_file(reference.state_dict(), w2v_file, metadata={"config": reference.config.to_json_string()})
    demixer = testing.save_tiny_demixer(folder / "demixer.safetensors")
    t5 = testing.save_tiny_t5(folder / "t5")
    config = json.loads((t5 / "config.json").read_text())
    (t5 / "config.json").write_text(json.dumps({**config, "d_model": 8192, "d_ff": 32768, "num_layers": 48}))
    return {
        "model with 10^9 layers": (load_mtv_model, _retag(model, folder / "m1.safetensors", _config_change("config", num_layers=10**9))),
        "model with a huge latent": (load_mtv_model, _retag(model, folder / "m2.safetensors", _config_change("config", sample_height=60000, sample_width=90000))),
        "model wider than its weights": (load_mtv_model, _retag(model, folder / "m3.safetensors", _config_change("config", attention_head_dim=4096))),
        "VAE with huge channels": (load_vae, _retag(vae, folder / "v1.safetensors", _config_change("config", block_out_channels=[4096] * 4))),
        "wav2vec2 of 64 wide layers": (load_wav2vec2, _retag(w2v_file, folder / "w1.safetensors", _config_change("config", hidden_size=4096, num_hidden_layers=64, intermediate_size=16384))),
        "demixer of 4096 channels": (load_demixer, _retag(demixer, folder / "d1.safetensors", _config_change("kwargs", channels=4096, depth=6))),
        "T5 folder bigger than its weights": (load_text_encoder, t5),
    }


MEMORY_PROBE = """
import resource, sys
sys.path[:0] = [{tests!r}]
from pathlib import Path
from mtv_core.errors import ModelFileError
from test_hostile_files import bombs
files = bombs(Path({folder!r}))
import gc; gc.collect()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name, (load, path) in files.items():
    try:
        load(path)
        print("LOADED", name)
    except ModelFileError as error:
        assert str(path) in str(error), (name, str(error))
        print("REFUSED", name, "|", str(error)[:160])
print("GROWTH_MIB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_configs_that_ask_for_more_than_the_file_holds_are_refused_in_bounded_memory(tmp_path):
    """Each bomb is refused before anything the size of its config is allocated: the process grows by less than
    the smallest bomb would take (the T5 bomb alone is 48 x 8192 x 32768 x 4 bytes = 48 GiB)."""
    script = MEMORY_PROBE.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("LOADED")], result.stdout
    assert len([line for line in lines if line.startswith("REFUSED")]) == 7, result.stdout
    growth = int(lines[-1].split()[1])
    assert growth < 200, f"loading the refused files grew the process by {growth} MiB"


@pytest.mark.parametrize("kind", ["wav2vec2", "T5", "VAE"])
def test_pickled_folder_weights_are_refused_by_name(tmp_path, kind):
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "wav2vec2":
        testing.save_tiny_wav2vec2(folder)
    elif kind == "T5":
        testing.save_tiny_t5(folder)
    else:
        testing.tiny_vae().save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    load = {"wav2vec2": load_wav2vec2, "T5": load_text_encoder, "VAE": load_vae}[kind]
    with pytest.raises(ModelFileError, match=r"only pickled weights \(pytorch_model.bin\), which this pack never loads"):
        load(folder)


def test_a_diffusers_vae_folder_still_loads_and_matches(tmp_path):
    vae = testing.tiny_vae()
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae")
    for name, tensor in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_legacy_non_zip_checkpoint_is_read_not_called_corrupt(tmp_path):
    from mtv_core.checkpoints.files import load_pickled_state_dict

    path = tmp_path / "legacy.pt"
    torch.save({"module": {"x": torch.arange(3.0)}}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_pickled_state_dict(path)["module"]["x"], torch.arange(3.0))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelFileError, match="legacy.pt: not a readable legacy \\(pre-zip\\) PyTorch checkpoint"):
        load_pickled_state_dict(path)
