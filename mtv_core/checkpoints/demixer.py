"""HTDemucs demixer files: the safetensors file this pack writes (constructor arguments as JSON metadata, float32
weights) and demucs' own .th packages, read with torch's weights-only unpickler. Either is checked by building the
model it describes on the meta device before its weights are used."""

from __future__ import annotations

import inspect
import json
import os
import pickle
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..audio.demix import Demixer
from ..errors import ConfigError, ModelFileError
from ..fileio import atomic_write
from ..tensorfile import read_tensor_file
from .folders import build_on_meta, check_config_values

_SAFETENSORS_FORMAT = "mtv-demixer-htdemucs"
_SUPPORTED_CLASSES = ("HTDemucs",)


@dataclass
class DemixerFile:
    """What a demixer file holds: the HTDemucs constructor arguments and its float32 weights."""
    args: list
    kwargs: dict
    state: dict


def load_demixer(paths, overlap: float = 0.25, device="cpu") -> Demixer:
    """Loads one or several HTDemucs files (.safetensors converted here, or demucs .th) of one layout."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ConfigError("no demixer model given; pass at least one HTDemucs file.")
    models = [build_model(read_demixer_file(path), path) for path in paths]
    return Demixer(models, overlap=overlap, device=device)


def read_demixer_file(path) -> DemixerFile:
    """Reads a converted .safetensors file, or a demucs .th package without running any pickled code."""
    path = str(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: demixer file not found; give the path of an HTDemucs .th or converted .safetensors file.")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    return _read_demucs_package(path)


def build_model(demixer_file: DemixerFile, path="demixer"):
    model, expected = meta_model(demixer_file.args, demixer_file.kwargs, path)
    _check_shapes(expected, {name: tuple(t.shape) for name, t in demixer_file.state.items()}, path)
    model.load_state_dict(demixer_file.state, strict=True, assign=True)
    return model.eval()


# Counts that make one module each, bounded before a model is built (htdemucs: depth 4, 5 transformer layers).
DEMUCS_LIMITS = {"depth": (1, 12), "t_layers": (0, 32), "dconv_depth": (0, 8), "channels": (1, 4096),
                 "audio_channels": (1, 8), "t_heads": (1, 64), "nfft": (16, 65536)}
DEMUCS_FIX = "give an HTDemucs model converted with `python -m mtv_core convert-demixer`, or a demucs .th file"


def meta_model(args: list, kwargs: dict, path):
    """The HTDemucs the file's arguments describe, built on the meta device (no memory), and its tensor shapes."""
    try:
        from demucs.htdemucs import HTDemucs
    except ImportError as error:
        raise ConfigError("demixing needs the demucs package: pip install demucs (it needs no torchaudio).") from error

    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ModelFileError(f"{path}: its model arguments are not a list and a mapping; {DEMUCS_FIX}.")
    accepted = inspect.signature(HTDemucs).parameters
    kwargs = check_config_values({name: value for name, value in kwargs.items() if name in accepted}, DEMUCS_LIMITS,
                                 path, "HTDemucs", DEMUCS_FIX)
    sources = kwargs.get("sources", args[0] if args else None)
    if not isinstance(sources, list) or not 1 <= len(sources) <= 16 or not all(isinstance(s, str) for s in sources):
        raise ModelFileError(f"{path}: its sources {str(sources)[:80]} are not a list of up to 16 names; {DEMUCS_FIX}.")
    try:
        return build_on_meta(lambda: HTDemucs(*args, **kwargs))
    except (RuntimeError, TypeError, ValueError, ZeroDivisionError, AssertionError) as error:
        raise ModelFileError(f"{path}: its arguments do not describe an HTDemucs ({str(error)[:200]}); {DEMUCS_FIX}.") from None


def _check_shapes(expected: dict, found: dict, path) -> None:
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    if missing or unexpected or wrong:
        raise ModelFileError(f"{path}: the weights do not fit an HTDemucs built from the file's own arguments (missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]}, other shapes {wrong[:3]}); the file is damaged "
                             "or not an HTDemucs model.")


def save_demixer(model, output_path, source: str = "demixer") -> Path:
    """Write an HTDemucs made in this process (demucs records its constructor arguments) as a demixer file, once
    the file's contents are checked to build the model again."""
    args, kwargs = model._init_args_kwargs
    state = {name: value.float() if value.is_floating_point() else value for name, value in model.state_dict().items()}
    demixer_file = DemixerFile(list(args), dict(kwargs), state)
    build_model(demixer_file, source)
    write_demixer_file(demixer_file, output_path)
    return Path(output_path)


def convert_demixer(input_path, output_path) -> DemixerFile:
    """Converts a demucs .th package to safetensors once; the weights are checked by building the model."""
    demixer_file = read_demixer_file(input_path)
    build_model(demixer_file, input_path)
    write_demixer_file(demixer_file, output_path)
    return demixer_file


def write_demixer_file(demixer_file: DemixerFile, output_path) -> None:
    """Writes the constructor arguments (as JSON metadata) and weights as one safetensors file, atomically."""
    metadata = {"format": _SAFETENSORS_FORMAT, "args": _to_json(demixer_file.args), "kwargs": _to_json(demixer_file.kwargs)}
    tensors = {name: tensor.contiguous() for name, tensor in demixer_file.state.items()}
    atomic_write(output_path, lambda temp: save_file(tensors, temp, metadata=metadata))


def _read_safetensors(path) -> DemixerFile:
    tensors = read_tensor_file(path, "demixer file")
    if tensors.metadata.get("format") != _SAFETENSORS_FORMAT:
        raise ModelFileError(f"{path}: not a demixer converted by `python -m mtv_core convert-demixer` (metadata format {tensors.metadata.get('format')!r}).")
    args = _from_json(tensors.json_metadata("args", DEMUCS_FIX))
    kwargs = _from_json(tensors.json_metadata("kwargs", DEMUCS_FIX))
    _, expected = meta_model(args, kwargs, path)
    _check_shapes(expected, tensors.shapes, path)
    return DemixerFile(args, kwargs, tensors.load())


def _read_demucs_package(path) -> DemixerFile:
    """Unpickles with torch's weights-only loader; only HTDemucs's class reference and Fraction are allowed."""
    allowed = [Fraction]
    try:
        from demucs.htdemucs import HTDemucs

        allowed.append(HTDemucs)
    except ImportError as error:
        raise ConfigError("reading a demucs .th file needs the demucs package: pip install demucs.") from error
    try:
        with torch.serialization.safe_globals(allowed):
            package = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{path}: refused to load: the file holds objects other than tensors and model arguments "
            f"({str(error).splitlines()[0][:300]}). Only demucs HTDemucs packages are accepted; do not load files you do not trust."
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable PyTorch file ({error}); the download may be truncated, fetch it again.") from error
    return _package_contents(package, path)


def _package_contents(package, path) -> DemixerFile:
    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise ModelFileError(f"{path}: not a demucs model package (expected keys klass, args, kwargs, state); give a demucs .th model file.")
    klass_name = getattr(package["klass"], "__name__", str(package["klass"]))
    if klass_name not in _SUPPORTED_CLASSES:
        raise ModelFileError(f"{path}: model class {klass_name} is not supported; only HTDemucs (Demucs v4) models are.")
    state = package["state"]
    if not isinstance(state, dict) or not isinstance(package["args"], (list, tuple)) or not isinstance(package["kwargs"], dict):
        raise ModelFileError(f"{path}: not a demucs model package (its state, args or kwargs have the wrong type); give a demucs .th model file.")
    if state.get("__quantized"):
        raise ModelFileError(f"{path}: quantized demucs models are not supported; use the unquantized release of the model.")
    if not all(isinstance(tensor, torch.Tensor) for tensor in state.values()):
        raise ModelFileError(f"{path}: its state holds objects other than tensors; give a demucs .th model file.")
    state = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    return DemixerFile(list(package["args"]), dict(package["kwargs"]), state)


def _to_json(value) -> str:
    def encode(item):
        if isinstance(item, Fraction):
            return {"__fraction__": [item.numerator, item.denominator]}
        if isinstance(item, dict):
            return {str(key): encode(val) for key, val in item.items()}
        if isinstance(item, (list, tuple)):
            return [encode(val) for val in item]
        if item is None or isinstance(item, (bool, int, float, str)):
            return item
        raise ModelFileError(f"model argument {item!r} of type {type(item).__name__} cannot be stored; this demixer file is not supported.")

    return json.dumps(encode(value))


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__fraction__"}:
            return Fraction(*value["__fraction__"])
        return {key: _from_json(val) for key, val in value.items()}
    if isinstance(value, list):
        return [_from_json(val) for val in value]
    return value
