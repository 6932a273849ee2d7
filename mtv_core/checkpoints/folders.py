"""The checks every loader makes before it allocates a model, and the one recipe for a checked model folder.

A model folder is Hugging Face-style: config.json and .safetensors weights (pickled weights are refused, never
loaded). Its config is read and bounded, each weight file's header is checked (`mtv_core.tensorfile`), and a model
built from the config on the meta device (no memory) must fit the weights, all before a byte of weights is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..tensorfile import TensorFile, read_tensor_file

MAX_LIST = 64
MAX_CONFIG_BYTES = 10_000_000
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# A folder's model may hold this many numbers more than its weight files: buffers and tied weights the files leave out.
SLACK_NUMBERS = 1_000_000


@dataclass(frozen=True)
class CheckedFolder:
    """A model folder whose config and weights agree: `model` is built from `config` on the meta device."""

    folder: Path
    config: dict
    files: list[TensorFile]
    model: torch.nn.Module

    def state_dict(self) -> dict:
        """Every tensor of the weight files, read only now."""
        return {name: tensor for file in self.files for name, tensor in file.load().items()}


def check_model_folder(folder, what: str, limits: dict, build: Callable[[dict], torch.nn.Module], fix: str) -> CheckedFolder:
    """Read and check a model folder: its config.json (a mapping with `limits` kept), its .safetensors headers, and
    `build(config)` made on the meta device, which must fit the weights. `what` names the model in errors, `fix`
    says what to give instead."""
    folder = Path(folder)
    config = check_config_values(read_config_json(folder / "config.json", what), limits, folder, what, fix)
    files = weight_files(folder, what)
    model, _ = build_on_meta(lambda: build(config))
    check_folder_weights(folder, model, files, what, fix)
    return CheckedFolder(folder, config, files, model)


def read_config_json(path: Path, what: str) -> dict:
    """A model folder's config.json as a mapping, or a ModelFileError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path.parent}: the {what} folder has no config.json; give the whole Hugging Face folder")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{path}: {path.stat().st_size} bytes is not a model config; give the real config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"{path}: not JSON ({error}); give the {what}'s own config.json") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: a {type(config).__name__}, not a config mapping; give the {what}'s own config.json")
    return config


def weight_files(folder: Path, what: str) -> list[TensorFile]:
    """The safetensors weights of a model folder, headers checked; pickled weights are refused, never loaded."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in Path(folder).iterdir() if p.suffix in PICKLED_SUFFIXES)
        hint = (f"it holds only pickled weights ({', '.join(pickled[:3])}), which this pack never loads (a pickle can "
                "run code); use a copy with .safetensors weights") if pickled else "it holds no .safetensors weights"
        raise ModelFileError(f"{folder}: not a usable {what} folder: {hint}")
    return [read_tensor_file(path, what) for path in files]


def check_folder_weights(folder: Path, module, files: list[TensorFile], what: str, fix: str) -> None:
    """A model built on the meta device from a folder's config fits the folder's weights: tensors both name have
    the same shape, and the model holds no more numbers than the files (so its config cannot ask for more memory
    than the download brought)."""
    available = {name: entry.shape for file in files for name, entry in file.tensors.items()}
    for name, tensor in module.state_dict().items():
        if name in available and tuple(tensor.shape) != available[name]:
            raise ModelFileError(f"{folder}: tensor {name} has shape {available[name]} in the weights but "
                                 f"{tuple(tensor.shape)} in config.json; {fix}")
    wanted = sum({id(p): p.numel() for p in module.parameters()}.values())
    held = sum(math.prod(shape) for shape in available.values())
    if wanted > held + SLACK_NUMBERS:
        raise ModelFileError(f"{folder}: config.json describes a {what} of {wanted:,} numbers but the weights hold "
                             f"{held:,}; {fix}")


def build_on_meta(build):
    """(module, {name: shape}) for the module `build()` makes, built on the meta device: its weights take no memory
    whatever its config says, so it can be compared with a file before anything is allocated."""
    with torch.device("meta"):
        module = build()
    return module, {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}


def check_config_values(config, limits: dict, path, what: str, fix: str) -> dict:
    """A config read from a file: a mapping whose listed whole numbers are in range (`limits`: {key: (lo, hi)});
    keys that size a model by count (layers, blocks) are what must be bounded before anything is built."""
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: its {what} config is a {type(config).__name__}, not a mapping; {fix}")
    for key, (low, high) in limits.items():
        value = config.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if key in config and not (len(values) <= MAX_LIST and all(_in_range(v, low, high) for v in values)):
            raise ModelFileError(f"{path}: its {what} config has {key} = {str(value)[:60]}, outside {low}..{high}; {fix}")
    lists = [key for key, value in config.items() if isinstance(value, (list, tuple)) and len(value) > MAX_LIST]
    if lists:
        raise ModelFileError(f"{path}: its {what} config has a list of over {MAX_LIST} entries ({lists[0]}); {fix}")
    return config


def public_settings(config: dict) -> dict:
    """A config without the underscored bookkeeping keys (`_class_name`, `_name_or_path`, ...) libraries add."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def _in_range(value, low, high) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
