"""wav2vec2 at the video frame rate, as the official MTV pipeline computes it
(suimuc/MTV_Framework: sgm/utils/audio_processor.py and sgm/models/wav2vec.py).

The CNN features (50 Hz) are linearly interpolated (align_corners=True) to the frame count before the
transformer, through a forward hook on `model.feature_extractor`; the stock forward then runs with
`output_hidden_states=True`. This works on transformers 4.x and 5.x alike. Checkpoints are read by
`mtv_core.checkpoints.wav2vec`.
"""

import hashlib
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..spec import SEGMENT_FRAMES, WAV2VEC_SAMPLE_RATE

NORMALIZE_EPS = 1e-7


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
    """A Hugging Face Wav2Vec2Model that returns every transformer layer at the video frame rate
    (`mtv_core.checkpoints.load_wav2vec2` loads one)."""

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
