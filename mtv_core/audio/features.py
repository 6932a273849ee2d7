"""`AudioFeatures` (per-stream wav2vec2 features at the video frame rate) and the encoders that make them.

Each stem is read twice, block by block: once for its length, level (whole and per frame) and mean/variance (wav2vec2
normalises a whole file), once to encode it pass by pass. Features go to a file as they are made (`encode_stem_files`)
or to memory (`encode_stems`, for stems already in memory), so encoding a long soundtrack to a file takes memory that
does not grow with its length; a features file is read back memory-mapped. Where a stream's audio comes from is
sources.py's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import AudioInputError, ConfigError, ModelFileError
from ..fileio import publish, temp_file_beside
from ..spec import FEATURE_WINDOW_RADIUS, FPS, SEGMENT_FRAMES, SPEECH, SPEECH2, STREAMS
from ..tensorfile import read_tensor_file, write_tensor_file
from .levels import DEFAULT_SILENCE_DBFS, FLOOR_DBFS, FrameLevels, LevelMeter
from .sources import BLOCK_SECONDS, StemSource, file_sources
from .stems import Stems
from .wav2vec import (
    CONTEXT_SECONDS,
    MAX_PASS_SECONDS,
    WAV2VEC_SAMPLE_RATE,
    SignalStats,
    Wav2Vec2Encoder,
    encode_stream,
    frame_count,
    padded_frame_count,
)

WINDOW_RADIUS = FEATURE_WINDOW_RADIUS
FORMAT = "mtv-audio-features"
ALIGN_TOLERANCE_SECONDS = 0.05
MAX_FPS = 120.0
LEVEL_PREFIX = "level."  # a stream's per-frame level in a features file: "level.speech", (N_padded,) dBFS


@dataclass
class AudioFeatures:
    """wav2vec2 features per stream, each (N_padded, layers, width) float32 at `fps`, in memory or memory-mapped.

    `num_frames` = ceil(duration * fps) is the real length; N_padded = 1 + 48k >= num_frames.
    `flags` says which streams were encoded from silence and why (absent or silent stem). `strengths` scales a
    stream's windows between its null input (0) and full (1), without copying the features. `levels` gives each
    measured stream's RMS level per frame, (N_padded,) dBFS (empty for features made before levels were kept).
    """
    per_stream: dict
    num_frames: int
    fps: float
    source_id: str = ""
    flags: dict = field(default_factory=dict)
    strengths: dict = field(default_factory=dict)
    levels: dict = field(default_factory=dict)

    @property
    def num_padded_frames(self) -> int:
        return next(iter(self.per_stream.values())).shape[0]

    def scaled(self, strengths: dict) -> "AudioFeatures":
        """The same features with streams scaled (0 = the null input the unconditional branch sees)."""
        unknown = sorted(set(strengths) - set(self.per_stream))
        if unknown:
            raise ConfigError(f"no audio stream {unknown} to scale; these features have {sorted(self.per_stream)}")
        return replace(self, strengths={**self.strengths, **{name: self.strengths.get(name, 1.0) * float(value)
                                                             for name, value in strengths.items()}})

    def window(self, start: int, length: int) -> dict:
        """For frames start..start+length-1: features of frames n-2..n+2, clamped to the padded file.

        Frames at or past the padded length get zero features, as the official chaining does.
        Returns {stream: (length, 5, layers, width)}.
        """
        if start < 0 or length <= 0:
            raise ConfigError(f"feature window start {start}, length {length} is invalid; use start >= 0 and length > 0.")
        total = self.num_padded_frames
        frames = torch.arange(start, start + length)
        indices = (frames[:, None] + torch.arange(-WINDOW_RADIUS, WINDOW_RADIUS + 1)[None]).clamp(0, total - 1)
        low, high = int(indices.min()), int(indices.max()) + 1  # read only the rows this window touches
        inside = (frames < total).to(torch.float32)[:, None, None, None]
        return {name: features[low:high][indices - low] * inside * self.strengths.get(name, 1.0)
                for name, features in self.per_stream.items()}

    def speech_levels(self, start: int, length: int) -> torch.Tensor | None:
        """The louder speaker's level (dBFS) in frames start..start+length-1, the floor past the padded end; None
        when these features have no speech levels."""
        kept = [self.levels[name] for name in (SPEECH, SPEECH2) if name in self.levels]
        if not kept:
            return None
        window = torch.full((length,), FLOOR_DBFS)
        loudest = torch.stack(kept).amax(dim=0)[start:start + length]
        window[:loudest.shape[0]] = loudest
        return window

    def flat_window(self, start: int, length: int) -> dict:
        """`window` flattened per frame in (window, layer, channel) order: {stream: (length, 5*layers*width)}."""
        return {name: window.reshape(length, -1) for name, window in self.window(start, length).items()}

    def save(self, path) -> None:
        tensors = {**self.per_stream, **{LEVEL_PREFIX + name: level for name, level in self.levels.items()}}
        with FeatureFile(path, {name: tuple(t.shape) for name, t in tensors.items()}, self._metadata()) as out:
            for name, tensor in tensors.items():
                out.write(name, 0, tensor * self.strengths.get(name, 1.0))

    def _metadata(self) -> dict:
        return {"format": FORMAT, "num_frames": str(self.num_frames), "fps": repr(float(self.fps)),
                "source_id": self.source_id, "flags": json.dumps(self.flags)}

    @classmethod
    def load(cls, path) -> "AudioFeatures":
        """Read a features file memory-mapped: only the windows a job touches are read from disk."""
        file = read_tensor_file(path, "features file")
        fix = "run `python -m mtv_core features` again"
        if file.metadata.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not an MTV audio-features file (format {file.metadata.get('format')!r}); {fix}.")
        streams, levels = split_levels(file.tensors)
        if not streams or any(e.dtype != "F32" or len(e.shape) != 3 for e in streams.values()) or \
                any(e.dtype != "F32" or len(e.shape) != 1 for e in levels.values()) or \
                len({e.shape[0] for e in file.tensors.values()}) > 1:
            raise ModelFileError(f"{path}: its streams are not float32 (frames, layers, width) and levels float32 "
                                 f"(frames,), all of one length; {fix}.")
        unknown = sorted((set(streams) | set(levels)) - set(STREAMS))
        if unknown:
            raise ModelFileError(f"{path}: unknown streams {unknown}; {fix}.")
        try:
            num_frames, fps = int(file.metadata["num_frames"]), float(file.metadata["fps"])
            flags = json.loads(file.metadata.get("flags", "{}"))
        except (KeyError, ValueError) as error:
            raise ModelFileError(f"{path}: its frame count, fps or flags are missing or malformed ({error}); {fix}.") from None
        data_start = 8 + struct.unpack("<Q", Path(path).open("rb").read(8))[0]
        # Copy-on-write maps: tensors whose pages are read from the file only when a window touches them.
        mapped = {name: torch.from_numpy(np.memmap(path, dtype="<f4", mode="c", offset=data_start + entry.start,
                                                   shape=entry.shape)) for name, entry in file.tensors.items()}
        per_stream, levels = split_levels(mapped)
        return cls(per_stream, num_frames, fps, file.metadata.get("source_id", ""), flags if isinstance(flags, dict) else {},
                   levels=levels)


def split_levels(tensors: dict) -> tuple[dict, dict]:
    """A features file's tensors as ({stream: features}, {stream: levels})."""
    levels = {name[len(LEVEL_PREFIX):]: value for name, value in tensors.items() if name.startswith(LEVEL_PREFIX)}
    return {name: value for name, value in tensors.items() if not name.startswith(LEVEL_PREFIX)}, levels


class FeatureFile:
    """A features file written in place: the header first (every shape is known before encoding), then each
    stream's rows as they are made; it appears under its name only when complete."""
    def __init__(self, path, shapes: dict, metadata: dict):
        self.path = Path(path)
        header = {name: {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 0]} for name, shape in shapes.items()}
        offset = 0
        for name, shape in shapes.items():
            size = math.prod(shape) * 4
            header[name]["data_offsets"] = [offset, offset + size]
            offset += size
        header["__metadata__"] = metadata
        encoded = json.dumps(header).encode()
        encoded += b" " * (-len(encoded) % 8)
        self.starts = {name: 8 + len(encoded) + header[name]["data_offsets"][0] for name in shapes}
        self.row_bytes = {name: math.prod(shape[1:]) * 4 for name, shape in shapes.items()}
        descriptor, self.temp = temp_file_beside(self.path)
        self.handle = os.fdopen(descriptor, "w+b")
        self.handle.write(struct.pack("<Q", len(encoded)) + encoded)
        self.handle.truncate(8 + len(encoded) + offset)

    def write(self, name: str, first_row: int, rows: torch.Tensor) -> None:
        self.handle.seek(self.starts[name] + first_row * self.row_bytes[name])
        self.handle.write(rows.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        try:
            if error_type is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if error_type is None:
                publish(self.temp, self.path)
        finally:
            Path(self.temp).unlink(missing_ok=True)


@dataclass
class _Measured:
    samples: int
    stats: SignalStats
    silent: bool
    levels: FrameLevels


def _measure(source: StemSource, limit: Optional[int], silence_dbfs: float, fps: float) -> _Measured:
    """The stream's length, and the level (whole and per frame) and mean/variance of its first `limit` samples (all
    without a limit); the part of `limit` past its end counts as zeros, as alignment pads it."""
    stats, meter, count = SignalStats(), LevelMeter(WAV2VEC_SAMPLE_RATE, silence_dbfs), 0
    levels = FrameLevels(WAV2VEC_SAMPLE_RATE, fps)
    for block in source.blocks():
        kept = block if limit is None else block[:max(0, limit - count)]
        stats.update(kept)
        meter.update(kept[None])
        levels.update(kept)
        count += block.numel()
    if limit is not None and count < limit:
        stats.count += limit - count
    return _Measured(count, stats, meter.report().silent, levels)


def _aligned_blocks(source: StemSource, length: int, normalize):
    """Exactly `length` normalised samples: cut, or padded with (normalised) zeros."""
    produced = 0
    for block in source.blocks():
        block = block[:max(0, length - produced)]
        produced += block.numel()
        if block.numel():
            yield normalize(block)
    if produced < length:
        yield normalize(torch.zeros(length - produced))


# -- encoding ---------------------------------------------------------------------------------------------------
def encode_sources(sources: dict, encoder: Wav2Vec2Encoder, fps: float = FPS, clip_length: int = SEGMENT_FRAMES,
                   silence_dbfs: float = DEFAULT_SILENCE_DBFS, encode_silent_as_silence: bool = True, out=None,
                   flags: Optional[dict] = None, source_id: str = "", progress=None, cache_dir=None,
                   max_pass_seconds: Optional[float] = MAX_PASS_SECONDS, context_seconds: float = CONTEXT_SECONDS) -> AudioFeatures:
    """Encode every stream of `sources` ({name: StemSource}); into the file `out` when given, else into memory.

    Streams are cut or padded to the speech stream's length (else the first's); a difference above 50 ms is an
    error. Absent streams (`flags`: {name: why}) and, with `encode_silent_as_silence`, streams quieter than
    `silence_dbfs` (demix bleed, which normalisation would blow up to full level) are encoded from digital silence
    of the same length: wav2vec(silence), as the official code gives the model for an absent speaker. Zero
    features are left for the unconditional branch. `cache_dir` keeps each stream's features by content."""
    check_fps(fps)
    flags = dict(flags or {})
    names = [name for name in STREAMS if name in sources]
    present = [name for name in names if name not in flags]
    if not present:
        raise AudioInputError("no audio streams to encode; give at least one of speech, effects, music.")
    reference = SPEECH if SPEECH in present else present[0]
    measured = {reference: _measure(sources[reference], None, silence_dbfs, fps)}
    length = measured[reference].samples
    if length < WAV2VEC_SAMPLE_RATE / fps:
        raise AudioInputError(f"the audio lasts {length / WAV2VEC_SAMPLE_RATE:.3f}s, shorter than one video frame "
                              f"(1/{fps:g}s); give at least one frame of sound")
    for name in present:
        if name != reference:
            measured[name] = _measure(sources[name], length, silence_dbfs, fps)
            _check_aligned(name, sources[name], measured[name].samples, reference, sources[reference], length)
        if encode_silent_as_silence and measured[name].silent:
            flags[name] = f"below {silence_dbfs} dBFS"
    flags = {name: f"encoded from silence: {why}" for name, why in flags.items()}
    num_frames = frame_count(length, fps)
    shape = (padded_frame_count(num_frames, clip_length), encoder.num_layers, encoder.hidden_size)
    levels = {LEVEL_PREFIX + name: measured[name].levels.levels(shape[0]) for name in present}
    metadata = {"format": FORMAT, "num_frames": str(num_frames), "fps": repr(float(fps)), "source_id": source_id,
                "flags": json.dumps(flags)}
    settings = {"fps": float(fps), "clip": clip_length, "pass": max_pass_seconds, "context": context_seconds, "v": 2}
    shapes = {**{name: shape for name in names}, **{name: tuple(level.shape) for name, level in levels.items()}}
    with _Sink(out, shapes, metadata, cache_dir, encoder, settings) as sink:
        for name, level in levels.items():
            sink.writer(name)(0, level)
        for index, name in enumerate(names):
            blocks = (_zeros(length) if name in flags else
                      _aligned_blocks(sources[name], length, measured[name].stats.normalizer()))
            sink.encode(name, blocks, length, lambda rows: encode_stream(encoder, rows, length, fps, sink.writer(name),
                                                                         clip_length, max_pass_seconds, context_seconds))
            if progress is not None:
                progress(index + 1, len(names))
    if out is not None:
        return AudioFeatures.load(out)
    per_stream, levels = split_levels(sink.tensors)
    return AudioFeatures(per_stream, num_frames, fps, source_id, flags, levels=levels)


def _zeros(length: int):
    step = int(BLOCK_SECONDS * WAV2VEC_SAMPLE_RATE)
    for start in range(0, length, step):
        yield torch.zeros(min(step, length - start))


class _Sink:
    """Where encoded rows go: a features file or tensors in memory; with a cache folder, a stream whose content
    was encoded before with the same settings is copied from there."""
    def __init__(self, out, shapes: dict, metadata: dict, cache_dir, encoder, settings: dict):
        self.file = None if out is None else FeatureFile(out, shapes, metadata)
        self.tensors = {} if out is not None else {name: torch.empty(shape) for name, shape in shapes.items()}
        self.shapes, self.cache_dir = shapes, None if cache_dir is None else Path(cache_dir)
        self.settings = json.dumps({**settings, "encoder": encoder.fingerprint}) if cache_dir is not None else ""

    def writer(self, name: str):
        def write(first: int, rows: torch.Tensor) -> None:
            if self.file is not None:
                self.file.write(name, first, rows)
            else:
                self.tensors[name][first:first + rows.shape[0]] = rows
            if self._cached is not None:
                self._cached[first:first + rows.shape[0]] = rows
        return write

    def encode(self, name: str, blocks, length: int, encode) -> None:
        self._cached = None
        if self.cache_dir is None:
            encode(blocks)
            return
        blocks = list(blocks)  # the content decides the cache entry; a cached stream is short enough to hold
        digest = hashlib.sha256(self.settings.encode() + str(length).encode())
        for block in blocks:
            digest.update(block.numpy().tobytes())
        path = self.cache_dir / f"w2v-{digest.hexdigest()[:24]}.safetensors"
        if path.is_file():
            self.writer(name)(0, read_tensor_file(path, "feature cache file").load()["features"])
            return
        self._cached = torch.empty(self.shapes[name])
        encode(blocks)

        write_tensor_file(path, {"features": self._cached})
        self._cached = None

    def __enter__(self):
        self._cached = None
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.__exit__(*exc)


def _check_aligned(name, source, samples, reference, reference_source, length) -> None:
    if abs(samples - length) > ALIGN_TOLERANCE_SECONDS * WAV2VEC_SAMPLE_RATE:
        raise AudioInputError(
            f"stem {name} ({source.describe()}) is {samples / WAV2VEC_SAMPLE_RATE:.3f} s long but {reference} "
            f"({reference_source.describe()}) is {length / WAV2VEC_SAMPLE_RATE:.3f} s; give stems cut from the same audio.")


def check_fps(fps) -> float:
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise ConfigError(f"fps {fps!r} is invalid; MTV works at 24 (a frame rate in (0, {MAX_FPS:g}] is accepted).")
    return float(fps)


def encode_stems(stems: Stems, encoder: Wav2Vec2Encoder, fps: float = FPS, clip_length: int = SEGMENT_FRAMES,
                 silence_dbfs: float = DEFAULT_SILENCE_DBFS, encode_silent_as_silence: bool = True, out=None,
                 **options) -> AudioFeatures:
    """Encodes the streams of in-memory `stems` (speech, effects, music, and speech2 when present)."""
    sources = {name: StemSource.tensor(track, stems.sample_rate) for name, track in stems.streams.items()}
    return encode_sources(sources, encoder, fps, clip_length, silence_dbfs, encode_silent_as_silence, out,
                          flags=stems.flags, source_id=stems.source_id, **options)


def encode_stem_files(files: dict, encoder: Wav2Vec2Encoder, out, fps: float = FPS, speaker_ranges: str = "",
                      **options) -> AudioFeatures:
    """Encodes stem files ({stream: path}; streams not given are silence) into the features file `out`, streaming:
    the memory this takes does not grow with the audio's length."""
    sources, flags = file_sources(files, options.pop("flags", None), speaker_ranges)
    return encode_sources(sources, encoder, fps, out=out, flags=flags, **options)
