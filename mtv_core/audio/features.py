"""`AudioFeatures` (per-stream wav2vec2 features at the video frame rate) and `encode_stems`."""

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..errors import AudioInputError, ConfigError, ModelFileError
from ..fileio import atomic_write
from .io import Waveform, to_mono
from .levels import DEFAULT_SILENCE_DBFS, is_silent
from .resample import resample
from .stems import Stems
from .wav2vec import WAV2VEC_SAMPLE_RATE, Wav2Vec2Encoder, encode_waveform

WINDOW_RADIUS = 2
_FORMAT = "mtv-audio-features"


@dataclass
class AudioFeatures:
    """wav2vec2 features per stream, each (N_padded, layers, width) float32 at `fps`.

    `num_frames` = ceil(duration * fps) is the real length; N_padded = 1 + 48k >= num_frames.
    `flags` says which streams were encoded from silence and why (absent or silent stem).
    """

    per_stream: dict
    num_frames: int
    fps: float
    source_id: str = ""
    flags: dict = field(default_factory=dict)

    @property
    def num_padded_frames(self) -> int:
        return next(iter(self.per_stream.values())).shape[0]

    def window(self, start: int, length: int) -> dict:
        """For frames start..start+length-1: features of frames n-2..n+2, clamped to the padded file.

        Frames at or past the padded length get zero features, as the official chaining does.
        Returns {stream: (length, 5, layers, width)}.
        """
        if start < 0 or length <= 0:
            raise ConfigError(f"feature window start {start}, length {length} is invalid; use start >= 0 and length > 0.")
        frames = torch.arange(start, start + length)
        indices = (frames[:, None] + torch.arange(-WINDOW_RADIUS, WINDOW_RADIUS + 1)[None]).clamp(0, self.num_padded_frames - 1)
        inside = (frames < self.num_padded_frames).to(torch.float32)[:, None, None, None]
        return {name: features[indices] * inside for name, features in self.per_stream.items()}

    def flat_window(self, start: int, length: int) -> dict:
        """`window` flattened per frame in (window, layer, channel) order: {stream: (length, 5*layers*width)}."""
        return {name: window.reshape(length, -1) for name, window in self.window(start, length).items()}

    def save(self, path) -> None:
        from safetensors.torch import save_file

        metadata = {"format": _FORMAT, "num_frames": str(self.num_frames), "fps": repr(float(self.fps)), "source_id": self.source_id, "flags": json.dumps(self.flags)}
        atomic_write(path, lambda temp: save_file({name: t.contiguous() for name, t in self.per_stream.items()}, temp, metadata=metadata))

    @classmethod
    def load(cls, path) -> "AudioFeatures":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                per_stream = {name: handle.get_tensor(name) for name in handle.keys()}
        except (SafetensorError, OSError) as error:
            raise ModelFileError(f"{path}: not a readable features file ({error}); run `python -m mtv_core features` again.") from error
        if metadata.get("format") != _FORMAT:
            raise ModelFileError(f"{path}: not an MTV audio-features file (format {metadata.get('format')!r}).")
        return cls(per_stream, int(metadata["num_frames"]), float(metadata["fps"]), metadata.get("source_id", ""), json.loads(metadata.get("flags", "{}")))


def encode_stems(
    stems: Stems,
    encoder: Wav2Vec2Encoder,
    fps: float = 24,
    clip_length: int = 49,
    silence_dbfs: float = DEFAULT_SILENCE_DBFS,
    encode_silent_as_silence: bool = True,
    cache_dir: Optional[str] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    max_pass_seconds: Optional[float] = 300.0,
) -> AudioFeatures:
    """Encodes every track of `stems` (speech, effects, music, and speech2 when present).

    Absent tracks, and with `encode_silent_as_silence` tracks below `silence_dbfs` (demix bleed, which
    normalisation would otherwise blow up to full level), are encoded from digital silence of the same
    length: wav2vec(silence), as the official code gives the model for an absent speaker. Zero features
    are left for the unconditional branch.
    """
    if fps <= 0:
        raise ConfigError(f"fps {fps} is invalid; MTV uses 24.")
    if stems.duration < 1 / fps:
        raise AudioInputError(f"the audio lasts {stems.duration:.3f}s, shorter than one video frame (1/{fps:g}s); "
                              "give at least one frame of sound")
    per_stream, flags, num_frames = {}, {}, None
    names = [name for name in ("speech", "speech2", "effects", "music") if name in stems.tracks]
    for index, name in enumerate(names):
        samples = _mono_16k(stems.tracks[name], stems.sample_rate)
        reason = _silence_reason(stems, name, silence_dbfs, encode_silent_as_silence)
        if reason:
            samples = torch.zeros_like(samples)
            flags[name] = reason
        per_stream[name], num_frames = _cached_encode(encoder, samples, fps, clip_length, cache_dir, max_pass_seconds)
        if progress is not None:
            progress(index + 1, len(names))
    return AudioFeatures(per_stream, num_frames, fps, stems.source_id, flags)


def _mono_16k(track: torch.Tensor, sample_rate: int) -> torch.Tensor:
    mono = to_mono(Waveform(track, sample_rate)).samples[0]
    return resample(mono, sample_rate, WAV2VEC_SAMPLE_RATE)


def _silence_reason(stems: Stems, name: str, silence_dbfs: float, encode_silent_as_silence: bool) -> str:
    if name in stems.flags:
        return f"encoded from silence: {stems.flags[name]}"
    if encode_silent_as_silence and is_silent(stems.tracks[name], stems.sample_rate, silence_dbfs):
        return f"encoded from silence: below {silence_dbfs} dBFS"
    return ""


def _cached_encode(encoder, samples, fps, clip_length, cache_dir, max_pass_seconds):
    if cache_dir is None:
        return encode_waveform(encoder, samples, fps, clip_length, max_pass_seconds)
    settings = json.dumps({"fps": float(fps), "clip": clip_length, "pass": max_pass_seconds, "encoder": encoder.fingerprint, "v": 1})
    digest = hashlib.sha256(settings.encode())
    digest.update(samples.contiguous().numpy().tobytes())
    path = os.path.join(cache_dir, f"w2v-{digest.hexdigest()[:24]}.safetensors")
    if os.path.isfile(path):
        from safetensors.torch import load_file

        cached = load_file(path)
        return cached["features"], int(cached["num_frames"])
    features, num_frames = encode_waveform(encoder, samples, fps, clip_length, max_pass_seconds)
    from safetensors.torch import save_file

    os.makedirs(cache_dir, exist_ok=True)
    atomic_write(path, lambda temp: save_file({"features": features.contiguous(), "num_frames": torch.tensor(num_frames)}, temp))
    return features, num_frames
