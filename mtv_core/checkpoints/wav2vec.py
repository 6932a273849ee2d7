"""wav2vec2 checkpoints: a Hugging Face folder (config.json + .safetensors weights) or one .safetensors file (with
a 'config' JSON in its metadata, or a config inferred from the tensor shapes). The config is checked against the
weights (a meta-device build) before anything is allocated."""

from __future__ import annotations

import os

import torch

from ..audio.wav2vec import Wav2Vec2Encoder
from ..errors import ModelFileError
from ..tensorfile import read_tensor_file
from .files import CONFIG_KEY
from .folders import build_on_meta, check_config_values, check_model_folder, public_settings

_TOP_LEVEL_NAMES = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed", "adapter.")
_WRAPPER_PREFIXES = ("wav2vec2.", "model.", "audio_encoder.")
_STANDARD_STRIDES = {10: 5, 3: 2, 2: 2}
_HEADS = ("lm_head.", "project_", "quantizer.")  # CTC and pre-training heads the features do not use

WAV2VEC_LIMITS = {"hidden_size": (8, 4096), "num_hidden_layers": (1, 64), "num_attention_heads": (1, 128),
                  "intermediate_size": (1, 16384), "conv_dim": (1, 4096), "conv_kernel": (1, 64), "conv_stride": (1, 64),
                  "num_conv_pos_embeddings": (1, 1024), "num_conv_pos_embedding_groups": (1, 1024), "vocab_size": (1, 100000)}
WAV2VEC_FIX = "give a Hugging Face wav2vec2 checkpoint (e.g. a local copy of facebook/wav2vec2-base-960h)"


def load_wav2vec2(path, device="cpu") -> Wav2Vec2Encoder:
    """A Wav2Vec2Encoder from a local Hugging Face folder or a single .safetensors file."""
    path = str(path)
    if os.path.isdir(path):
        return Wav2Vec2Encoder(_load_folder(path), os.path.basename(path.rstrip("/")), device)
    if os.path.isfile(path) and path.endswith(".safetensors"):
        return Wav2Vec2Encoder(_load_safetensors(path), os.path.basename(path), device)
    raise ModelFileError(f"{path}: not a wav2vec2 model folder or .safetensors file; {WAV2VEC_FIX}.")


def _load_folder(path):
    from transformers import Wav2Vec2Model

    check_model_folder(path, "wav2vec2 model", WAV2VEC_LIMITS, lambda values: Wav2Vec2Model(_config(values, path)),
                       WAV2VEC_FIX)
    try:
        return Wav2Vec2Model.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: could not load the wav2vec2 model ({str(error)[:300]}); {WAV2VEC_FIX}.") from None


def _config(values: dict, path):
    from transformers import Wav2Vec2Config

    try:
        return Wav2Vec2Config(**public_settings(values))
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: its config is not a valid wav2vec2 config ({str(error)[:200]}); {WAV2VEC_FIX}.") from None


def _load_safetensors(path):
    from transformers import Wav2Vec2Model

    tensors = read_tensor_file(path, "wav2vec2 file")
    names = {_strip_prefix(name): name for name in tensors.tensors if not _strip_prefix(name).startswith(_HEADS)}
    shapes = {name: tensors.tensors[original].shape for name, original in names.items()}
    values = tensors.json_metadata(CONFIG_KEY, WAV2VEC_FIX)
    values = check_config_values(values if values is not None else infer_config(shapes, path), WAV2VEC_LIMITS, path,
                                 "wav2vec2", WAV2VEC_FIX)
    model, expected = build_on_meta(lambda: Wav2Vec2Model(_config(values, path)))
    renamed = _match_weight_norm_names(dict(shapes), set(expected))
    missing = sorted(set(expected) - set(renamed) - {"masked_spec_embed"})  # a pre-training parameter, often left out
    unexpected = sorted(set(renamed) - set(expected))
    wrong = [name for name in set(expected) & set(renamed) if tuple(expected[name]) != tuple(renamed[name])]
    if missing or unexpected or wrong:
        raise ModelFileError(f"{path}: the weights do not match a wav2vec2 model (missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}, other shapes {wrong[:5]}); {WAV2VEC_FIX}.")
    loaded = tensors.load(list(names.values()))
    state = _match_weight_norm_names({name: loaded[original].float() for name, original in names.items()}, set(expected))
    if "masked_spec_embed" in expected and "masked_spec_embed" not in state:
        state["masked_spec_embed"] = torch.zeros(expected["masked_spec_embed"])
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _strip_prefix(name: str) -> str:
    """Drops wrapper prefixes such as Wav2Vec2ForCTC's "wav2vec2." from checkpoint keys."""
    if name.startswith(_TOP_LEVEL_NAMES):
        return name
    for prefix in _WRAPPER_PREFIXES:
        if name.startswith(prefix):
            return _strip_prefix(name[len(prefix):])
    return name


def infer_config(shapes: dict, path="wav2vec2") -> dict:
    """Rebuilds a Wav2Vec2Config from tensor shapes ({name: shape}); heads are assumed 64 wide, as in every released model."""
    try:
        conv_weights = [shapes[f"feature_extractor.conv_layers.{i}.conv.weight"] for i in range(_count(shapes, "feature_extractor.conv_layers."))]
        hidden = shapes["feature_projection.projection.weight"][0]
        pos_weight = _pos_conv_weight(shapes)
    except KeyError as error:
        raise ModelFileError(f"{path}: no 'config' metadata and tensor {error} is missing, so the model shape cannot be inferred; give a Hugging Face folder with config.json.") from None
    kernels = [weight[2] for weight in conv_weights]
    if hidden % 64 or any(kernel not in _STANDARD_STRIDES for kernel in kernels):
        raise ModelFileError(f"{path}: unusual shapes (width {hidden}, conv kernels {kernels}); add a 'config' JSON string to the safetensors metadata.")
    layer_norm_everywhere = "feature_extractor.conv_layers.1.layer_norm.weight" in shapes
    return {
        "hidden_size": hidden,
        "num_hidden_layers": _count(shapes, "encoder.layers."),
        "num_attention_heads": hidden // 64,
        "intermediate_size": shapes["encoder.layers.0.feed_forward.intermediate_dense.weight"][0],
        "conv_dim": [weight[0] for weight in conv_weights],
        "conv_kernel": kernels,
        "conv_stride": [_STANDARD_STRIDES[kernel] for kernel in kernels],
        "conv_bias": "feature_extractor.conv_layers.0.conv.bias" in shapes,
        "feat_extract_norm": "layer" if layer_norm_everywhere else "group",
        "do_stable_layer_norm": layer_norm_everywhere,
        "num_conv_pos_embeddings": pos_weight[2],
        "num_conv_pos_embedding_groups": hidden // pos_weight[1],
    }


def _count(state, prefix) -> int:
    indices = {int(part) for name in state if name.startswith(prefix) and (part := name[len(prefix):].split(".")[0]).isdigit()}
    return max(indices) + 1 if indices else 0


def _pos_conv_weight(state):
    for name in ("encoder.pos_conv_embed.conv.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv_embed.conv.weight"):
        if name in state:
            return state[name]
    raise KeyError("encoder.pos_conv_embed.conv.weight")


def _match_weight_norm_names(state: dict, expected: set) -> dict:
    """Old checkpoints name the weight-norm parts weight_g/weight_v, newer torch parametrizations.original0/1."""
    renames = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
    result = {}
    for name, tensor in state.items():
        for old, new in renames.items():
            if name.endswith(old) and name not in expected:
                candidate = name[: -len(old)] + new
                name = candidate if candidate in expected else name
            elif name.endswith(new) and name not in expected:
                candidate = name[: -len(new)] + old
                name = candidate if candidate in expected else name
        result[name] = tensor
    return result
