"""The CogVideoX VAE's files: a diffusers AutoencoderKLCogVideoX folder, or one safetensors file with its config in
the metadata (what `python -m mtv_core convert` makes of 3d-vae.pt, `trainer vae` writes and `models fetch`
installs). The config is checked and compared with the weights (a meta-device build) before anything is allocated."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from ..errors import ModelFileError
from ..tensorfile import read_tensor_file
from .files import CONFIG_KEY, save_safetensors
from .folders import build_on_meta, check_config_values, check_model_folder, public_settings

VAE_KIND = "cogvideox-vae"
VAE_LIMITS = {"block_out_channels": (1, 8192), "layers_per_block": (1, 16), "latent_channels": (1, 256),
              "in_channels": (1, 16), "out_channels": (1, 16), "norm_num_groups": (1, 1024)}
REBUILD_VAE = ("pass the CogVideoX VAE: a diffusers AutoencoderKLCogVideoX folder or the .safetensors that "
               "`python -m mtv_core convert` makes from 3d-vae.pt")


def load_vae(path, device="cpu", dtype=torch.float32):
    """AutoencoderKLCogVideoX from a diffusers folder or one converted safetensors file (config in metadata)."""
    path = Path(path)
    if path.is_dir():
        checked = check_model_folder(path, "VAE", VAE_LIMITS, lambda config: _from_config(config, path), REBUILD_VAE)
        vae, state = checked.model, checked.state_dict()
    elif path.is_file() and path.suffix == ".safetensors":
        vae, state = _read_vae_file(path)
    else:
        raise ModelFileError(f"VAE {str(path)!r} is neither a diffusers folder nor a .safetensors file; "
                             "convert 3d-vae.pt with `python -m mtv_core convert` first")
    try:
        vae.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ModelFileError(f"VAE {str(path)!r} does not match its config ({str(error)[:300]}); {REBUILD_VAE}") from None
    return torch.nn.Module.to(vae, device=device, dtype=dtype).eval()  # diffusers 0.42's .to(dtype) warns for nothing


def save_vae(vae, path) -> Path:
    """A CogVideoX VAE as one safetensors file with its config in the metadata: the file `load_vae` reads."""
    return save_safetensors(path, vae.state_dict(), json.loads(json.dumps(public_settings(vae.config))), VAE_KIND)


def convert_vae_folder(folder, path) -> Path:
    """A diffusers VAE folder, checked by loading it, written as one VAE file (`save_vae`)."""
    return save_vae(load_vae(folder), path)


def _read_vae_file(path: Path):
    tensors = read_tensor_file(path, "VAE file")
    config = tensors.json_metadata(CONFIG_KEY, REBUILD_VAE)
    if config is None:
        raise ModelFileError(f"VAE file {str(path)!r} has no 'config' metadata; it was not written by "
                             "`python -m mtv_core convert`. Convert the VAE again or pass a diffusers folder")
    check_config_values(config, VAE_LIMITS, path, "VAE", REBUILD_VAE)
    vae, expected = build_on_meta(lambda: _from_config(config, path))
    tensors.check_matches(expected, REBUILD_VAE)
    return vae, tensors.load()


def _from_config(config: dict, path):
    try:
        return AutoencoderKLCogVideoX.from_config(public_settings(config))
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise ModelFileError(f"{path}: its config is not a CogVideoX VAE's ({str(error)[:200]}); {REBUILD_VAE}") from None
