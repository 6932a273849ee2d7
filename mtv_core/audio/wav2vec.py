"""wav2vec2 at the video frame rate, as the official MTV pipeline computes it
(suimuc/MTV_Framework: sgm/utils/audio_processor.py and sgm/models/wav2vec.py).

The CNN features (50 Hz) are linearly interpolated (align_corners=True) to the frame count before the
transformer, through a forward hook on `model.feature_extractor`; the stock forward then runs with
`output_hidden_states=True`. This works on transformers 4.x and 5.x alike.
"""

import hashlib
import math
import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError, ModelFileError
from ..spec import SEGMENT_FRAMES, WAV2VEC_SAMPLE_RATE
from ..tensorfile import (
    build_on_meta,
    check_config_values,
    check_folder_weights,
    read_config_json,
    read_tensor_file,
    weight_files,
)

NORMALIZE_EPS = 1e-7
_TOP_LEVEL_NAMES = ("feature_extractor.", "feature_projection.", "encoder.", "masked_spec_embed", "adapter.")
_WRAPPER_PREFIXES = ("wav2vec2.", "model.", "audio_encoder.")
_STANDARD_STRIDES = {10: 5, 3: 2, 2: 2}
_HEADS = ("lm_head.", "project_", "quantizer.")  # CTC and pre-training heads the features do not use


def frame_count(num_samples: int, fps: float, sample_rate: int = WAV2VEC_SAMPLE_RATE) -> int:
    """ceil(duration * fps), computed as the official code does (float division, then ceil)."""
    return math.ceil(num_samples / sample_rate * fps)


def padded_frame_count(num_frames: int, clip_length: int = SEGMENT_FRAMES) -> int:
    """The next count of the form 1 + k * (clip_length - 1) at or above `num_frames`."""
    step = clip_length - 1
    remainder = (num_frames - 1) % step
    return num_frames if remainder == 0 else num_frames + step - remainder


class SignalStats:
    """Mean and variance of a signal given in blocks, in float64 (the per-file normalisation needs both before the
    first sample can be normalised)."""

    def __init__(self):
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def update(self, block: torch.Tensor) -> None:
        block = block.double()
        self.count += block.numel()
        self.total += float(block.sum())
        self.squares += float(block.pow(2).sum())

    def normalizer(self):
        """block -> (block - mean) / sqrt(var + 1e-7), as Wav2Vec2FeatureExtractor normalises a whole file."""
        mean = self.total / max(self.count, 1)
        scale = math.sqrt(max(self.squares / max(self.count, 1) - mean * mean, 0.0) + NORMALIZE_EPS)
        return lambda block: ((block.double() - mean) / scale).float()


def normalize_waveform(samples: torch.Tensor) -> torch.Tensor:
    """Per-file zero mean, unit variance: (x - mean) / sqrt(var + 1e-7), as Wav2Vec2FeatureExtractor."""
    stats = SignalStats()
    stats.update(samples)
    return stats.normalizer()(samples)


def pad_for_clips(normalized: torch.Tensor, num_frames: int, fps: float, clip_length: int = SEGMENT_FRAMES) -> tuple:
    """Appends zeros so the frame count becomes 1 + k*(clip_length-1); returns (waveform, padded count).

    Like the official code, each added frame adds `16000 // fps` zero samples to the normalised waveform.
    """
    padded = padded_frame_count(num_frames, clip_length)
    extra = (padded - num_frames) * (WAV2VEC_SAMPLE_RATE // int(fps))
    return F.pad(normalized, (0, extra)), padded


class Wav2Vec2Encoder:
    """A Hugging Face Wav2Vec2Model that returns every transformer layer at the video frame rate."""

    def __init__(self, model, name: str = "wav2vec2", device="cpu"):
        self.model = model.to(device).eval()
        self.name = name
        self._fingerprint = None

    @property
    def device(self) -> torch.device:
        """Where the model is now (ComfyUI's model management may have moved it): inputs are sent there."""
        return next(self.model.parameters()).device

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def fingerprint(self) -> str:
        """A hash of the configuration and weights, part of the feature cache key."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.model.config.to_json_string().encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Hidden states of all transformer layers for a prepared 16 kHz waveform [T]: (num_frames, layers, width)."""
        handle = self.model.feature_extractor.register_forward_hook(_interpolate_to(num_frames))
        try:
            output = self.model(waveform[None].to(self.device, torch.float32), output_hidden_states=True)
        finally:
            handle.remove()
        if output.hidden_states is None:
            raise ConfigError("the wav2vec2 model returned no hidden states; this transformers version is not supported.")
        return torch.stack(output.hidden_states[1:], dim=2)[0].float().cpu()

    @torch.no_grad()
    def conv_features(self, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The CNN features interpolated to `num_frames`, (num_frames, conv width): what the transformer sees."""
        features = self.model.feature_extractor(waveform[None].to(self.device, torch.float32))
        return _interpolate_to(num_frames)(None, None, features)[0].T.float().cpu()


def _interpolate_to(num_frames: int):
    def hook(module, inputs, output):
        return F.interpolate(output, size=num_frames, mode="linear", align_corners=True)

    return hook


WAV2VEC_LIMITS = {"hidden_size": (8, 4096), "num_hidden_layers": (1, 64), "num_attention_heads": (1, 128),
                  "intermediate_size": (1, 16384), "conv_dim": (1, 4096), "conv_kernel": (1, 64), "conv_stride": (1, 64),
                  "num_conv_pos_embeddings": (1, 1024), "num_conv_pos_embedding_groups": (1, 1024), "vocab_size": (1, 100000)}
WAV2VEC_FIX = "give a Hugging Face wav2vec2 checkpoint (e.g. a local copy of facebook/wav2vec2-base-960h)"


def load_wav2vec2(path, device="cpu") -> Wav2Vec2Encoder:
    """Loads a local Hugging Face folder (config.json + .safetensors weights) or a single .safetensors file. The
    config is checked against the weights (a meta-device build) before anything is allocated."""
    path = str(path)
    if os.path.isdir(path):
        return Wav2Vec2Encoder(_load_folder(path), os.path.basename(path.rstrip("/")), device)
    if os.path.isfile(path) and path.endswith(".safetensors"):
        return Wav2Vec2Encoder(_load_safetensors(path), os.path.basename(path), device)
    raise ModelFileError(f"{path}: not a wav2vec2 model folder or .safetensors file; {WAV2VEC_FIX}.")


def _load_folder(path):
    from transformers import Wav2Vec2Model

    config = _config(read_config_json(Path(path) / "config.json", "wav2vec2"), path)
    files = weight_files(Path(path), "wav2vec2")
    model, _ = build_on_meta(lambda: Wav2Vec2Model(config))
    check_folder_weights(Path(path), model, files, "wav2vec2 model", WAV2VEC_FIX)
    try:
        return Wav2Vec2Model.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: could not load the wav2vec2 model ({str(error)[:300]}); {WAV2VEC_FIX}.") from None


def _config(values: dict, path):
    from transformers import Wav2Vec2Config

    check_config_values(values, WAV2VEC_LIMITS, path, "wav2vec2", WAV2VEC_FIX)
    try:
        return Wav2Vec2Config(**{k: v for k, v in values.items() if not k.startswith("_")})
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: its config is not a valid wav2vec2 config ({str(error)[:200]}); {WAV2VEC_FIX}.") from None


def _load_safetensors(path):
    from transformers import Wav2Vec2Model

    tensors = read_tensor_file(path, "wav2vec2 file")
    names = {_strip_prefix(name): name for name in tensors.tensors if not _strip_prefix(name).startswith(_HEADS)}
    shapes = {name: tensors.tensors[original].shape for name, original in names.items()}
    values = tensors.json_metadata("config", WAV2VEC_FIX)
    config = _config(values if values is not None else infer_config(shapes, path), path)
    model, expected = build_on_meta(lambda: Wav2Vec2Model(config))
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


MAX_PASS_SECONDS = 60.0  # longer audio is encoded in passes of this much (plus context): memory stays bounded
CONTEXT_SECONDS = 10.0


def encode_waveform(encoder: Wav2Vec2Encoder, samples_16k: torch.Tensor, fps: float, clip_length: int = SEGMENT_FRAMES,
                    max_pass_seconds: Optional[float] = MAX_PASS_SECONDS, context_seconds: float = CONTEXT_SECONDS) -> tuple:
    """Features (padded frames, layers, width) and the real frame count for a mono 16 kHz waveform [T]."""
    num_frames = frame_count(samples_16k.shape[-1], fps)
    rows = torch.empty(padded_frame_count(num_frames, clip_length), encoder.num_layers, encoder.hidden_size)

    def write(first, features):
        rows[first:first + features.shape[0]] = features

    encode_stream(encoder, [normalize_waveform(samples_16k)], samples_16k.shape[-1], fps, write, clip_length,
                  max_pass_seconds, context_seconds)
    return rows, num_frames


def encode_stream(encoder: Wav2Vec2Encoder, blocks, num_samples: int, fps: float, write, clip_length: int = SEGMENT_FRAMES,
                  max_pass_seconds: Optional[float] = MAX_PASS_SECONDS, context_seconds: float = CONTEXT_SECONDS) -> None:
    """Encode a normalised mono 16 kHz signal that arrives in blocks (`num_samples` in all), calling
    `write(first_row, features)` as rows are ready. Zeros pad it to 1 + 48k frames, as the official code pads.

    Up to `max_pass_seconds` the signal is one pass, exactly as the official code does it. Longer signals are
    encoded in passes with `context_seconds` of audio on each side: memory stays bounded by the pass length
    (attention no longer spans the whole file, which the official code would need hundreds of GB for)."""
    num_frames = frame_count(num_samples, fps)
    padded = padded_frame_count(num_frames, clip_length)
    total = num_samples + (padded - num_frames) * (WAV2VEC_SAMPLE_RATE // int(fps))
    signal = _SlidingSignal(iter(blocks), num_samples)
    max_frames = padded if max_pass_seconds is None else max(1, int(max_pass_seconds * fps))
    if padded <= max_frames:
        write(0, encoder.encode(signal.take(0, total), padded))
        return
    context, samples_per_frame = round(context_seconds * fps), total / padded
    silent_passes = {}  # a pass of digital silence gives the same rows as an earlier one of the same shape
    for first in range(0, padded, max_frames):
        last = min(first + max_frames, padded)
        begin, end = max(0, first - context), min(padded, last + context)
        piece = signal.take(round(begin * samples_per_frame), round(end * samples_per_frame))
        shape = (piece.numel(), end - begin, first - begin, last - begin)
        if not piece.any() and shape in silent_passes:
            write(first, silent_passes[shape])
            continue
        rows = encoder.encode(piece, end - begin)[first - begin:last - begin]
        if not piece.any():
            silent_passes[shape] = rows
        write(first, rows)


class _SlidingSignal:
    """Samples [start, end) of a signal read block by block; zeros past its `length`; what lies before the last
    `start` asked for is dropped, so only one pass's samples are held."""

    def __init__(self, blocks, length: int):
        self.blocks, self.length = blocks, length
        self.buffer, self.offset = torch.zeros(0), 0  # buffer holds samples [offset, offset + len)

    def take(self, start: int, end: int) -> torch.Tensor:
        while self.offset + self.buffer.numel() < min(end, self.length):
            block = next(self.blocks, None)
            if block is None:
                break
            self.buffer = torch.cat([self.buffer, block.reshape(-1).float()])
        self.buffer = self.buffer[max(0, start - self.offset):]
        self.offset = max(self.offset, start)
        real = self.buffer[:max(0, min(end, self.length) - self.offset)]
        return torch.cat([real, torch.zeros(end - start - real.numel())])
