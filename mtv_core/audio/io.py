"""Decoding any audio (or the audio track of a video) with PyAV, WAV writing, and ComfyUI AUDIO conversion."""

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import av
import numpy as np
import torch

from ..errors import AudioInputError
from ..fileio import atomic_write, publish, temp_file_beside
from .resample import StreamResampler

# Decoders may emit a little codec padding after the declared end (AAC adds up to one frame); cut that
# much to the container's declared duration, but never more, since declared durations can be estimates.
MAX_TRAILING_PADDING = 4096
# A decode that ends this much before the declared end means a truncated or damaged file.
TRUNCATION_TOLERANCE_SECONDS = 0.5
_INTEGER_SCALES = {"s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63}
_LEFT = {"FL", "FLC", "SL", "BL", "TFL", "TBL", "WL", "SDL"}
_RIGHT = {"FR", "FRC", "SR", "BR", "TFR", "TBR", "WR", "SDR"}
_CENTRE = {"FC", "BC", "TC", "TFC", "TBC"}
_SMPTE_5_1 = ("FL", "FR", "FC", "LFE", "BL", "BR")


@dataclass
class Waveform:
    """Audio samples [C, T] float32 at `sample_rate`, with the source's channel names when known."""
    samples: torch.Tensor
    sample_rate: int
    channel_names: Optional[tuple] = None

    @property
    def num_channels(self) -> int:
        return self.samples.shape[0]

    @property
    def num_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass
class AudioInfo:
    sample_rate: int
    num_channels: int
    channel_names: tuple
    codec: str
    declared_duration: Optional[float]
    stream_duration: Optional[float]


def probe_audio(path) -> AudioInfo:
    """Reads the first audio stream's parameters without decoding it."""
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        return _stream_info(stream, container)


def iter_audio_blocks(
    path,
    start: float = 0.0,
    duration: Optional[float] = None,
    sample_rate: Optional[int] = None,
    block_seconds: float = 5.0,
) -> Iterator[torch.Tensor]:
    """Decodes `path` and yields float32 [C, n] blocks of about `block_seconds`, resampled when asked.

    Only one block (plus the decoder's and resampler's small state) is held at a time.
    """
    if start < 0 or (duration is not None and duration <= 0):
        raise AudioInputError(f"{path}: start {start} s / duration {duration} s are invalid; use start >= 0 and duration > 0.")
    with _open_container(path) as container:
        stream = _audio_stream(container, path)
        info = _stream_info(stream, container)
        rate = info.sample_rate
        resampler = StreamResampler(rate, sample_rate or rate)
        first_sample = round(start * rate)
        end_sample = first_sample + round(duration * rate) if duration is not None else None
        block_samples = max(1, round(block_seconds * rate))
        pending, position, produced = [], None, 0
        for frame in _decode_frames(container, stream, path, start, info):
            if position is None:
                position = _frame_position(frame, stream, rate, path) if start > 0 else 0
            array = _frame_to_array(frame, info, path)
            frame_start, position = position, position + array.shape[1]
            array = array[:, max(0, first_sample - frame_start):]
            if end_sample is not None:
                array = array[:, : max(0, end_sample - max(frame_start, first_sample))]
            pending.append(array)
            # Hold back a tail of MAX_TRAILING_PADDING samples so codec padding past the declared end can still be cut.
            if sum(a.shape[1] for a in pending) >= block_samples + MAX_TRAILING_PADDING:
                block, pending = _split_tail(pending, MAX_TRAILING_PADDING)
                produced += block.shape[1]
                yield resampler.push(_checked_block(block, path, produced))
            if end_sample is not None and position >= end_sample:
                break
        block = _trim_codec_padding(np.concatenate(pending, axis=1) if pending else np.zeros((info.num_channels, 0), np.float32), info, produced, duration, start)
        produced += block.shape[1]
        if produced == 0:
            raise _no_samples_error(path, info, start)
        if duration is None and start == 0:
            _check_not_truncated(path, info, produced)
        if block.shape[1]:
            yield resampler.push(_checked_block(block, path, produced))
        tail = resampler.flush()
        if tail.numel():
            yield tail


def load_audio(path, start: float = 0.0, duration: Optional[float] = None, sample_rate: Optional[int] = None, mono: bool = False) -> Waveform:
    """Decodes the first audio stream of `path` (any format FFmpeg reads) to a float32 [C, T] Waveform."""
    info = probe_audio(path)
    rate = sample_rate or info.sample_rate
    capacity = _expected_samples(info, start, duration, rate)
    samples = torch.empty(info.num_channels, capacity)
    length = 0
    for block in iter_audio_blocks(path, start, duration, sample_rate):
        if length + block.shape[1] > samples.shape[1]:
            samples = torch.cat([samples[:, :length], torch.empty(info.num_channels, max(block.shape[1], length // 2))], dim=1)
        samples[:, length:length + block.shape[1]] = block
        length += block.shape[1]
    samples = samples[:, :length] if length > 0.99 * samples.shape[1] else samples[:, :length].clone()
    waveform = Waveform(samples, rate, info.channel_names)
    return to_mono(waveform) if mono else waveform


def to_stereo(waveform: Waveform) -> Waveform:
    """Mono is duplicated; more than two channels are downmixed (centre at -3 dB, LFE dropped, normalised)."""
    samples = waveform.samples
    if waveform.num_channels == 1:
        return Waveform(samples.expand(2, -1).clone(), waveform.sample_rate, ("FL", "FR"))
    if waveform.num_channels == 2:
        return waveform
    matrix = downmix_matrix(waveform.channel_names or _default_names(waveform.num_channels))
    return Waveform(matrix @ samples, waveform.sample_rate, ("FL", "FR"))


def to_mono(waveform: Waveform) -> Waveform:
    """The mean of the channels (of the stereo downmix for surround), as librosa's mono load does for stereo."""
    stereo = to_stereo(waveform) if waveform.num_channels > 2 else waveform
    return Waveform(stereo.samples.mean(dim=0, keepdim=True), waveform.sample_rate, ("FC",))


def downmix_matrix(channel_names) -> torch.Tensor:
    """A [2, C] matrix from named channels to stereo; rows are normalised so a full-scale input cannot clip."""
    matrix = torch.zeros(2, len(channel_names))
    for index, name in enumerate(channel_names):
        if name in _LEFT:
            matrix[0, index] = 1.0
        elif name in _RIGHT:
            matrix[1, index] = 1.0
        elif name in _CENTRE:
            matrix[:, index] = math.sqrt(0.5)
    if matrix.sum() == 0:
        matrix[:] = 1.0
    return matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1e-8)


def save_wav(path, waveform: Waveform) -> None:
    """Writes a float32 WAV atomically (temp file in the same folder, then os.replace)."""
    with WavWriter(path, waveform.sample_rate, waveform.num_channels) as writer:
        writer.write(waveform.samples)


def write_text_atomically(path, text: str) -> None:
    def write(temp):
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


class WavWriter:
    """Streams float32 [C, n] blocks to a 32-bit float WAV; the file appears only when the writer closes cleanly."""
    def __init__(self, path, sample_rate: int, num_channels: int):
        self.path = Path(path)
        self.sample_rate, self.num_channels = int(sample_rate), int(num_channels)
        self.num_frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self._temp_path = temp_file_beside(self.path)
        self._file = os.fdopen(handle, "wb")
        self._file.write(self._header(0))

    def write(self, block: torch.Tensor) -> None:
        if block.shape[0] != self.num_channels:
            raise AudioInputError(f"{self.path}: block has {block.shape[0]} channels, the file {self.num_channels}.")
        self._file.write(block.detach().to("cpu", torch.float32).T.contiguous().numpy().astype("<f4").tobytes())
        self.num_frames += block.shape[1]

    def close(self) -> None:
        data_bytes = self.num_frames * self.num_channels * 4
        if data_bytes + 58 > 0xFFFFFFFF:
            self.abort()
            raise AudioInputError(f"{self.path}: {data_bytes} bytes exceed the 4 GiB WAV limit; write a shorter part of the audio (a later start or a shorter duration).")
        self._file.seek(0)
        self._file.write(self._header(self.num_frames))
        self._file.close()
        publish(self._temp_path, self.path)

    def abort(self) -> None:
        self._file.close()
        if os.path.exists(self._temp_path):
            os.unlink(self._temp_path)

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        if error_type is None:
            self.close()
        else:
            self.abort()

    def _header(self, num_frames: int) -> bytes:
        block_align = self.num_channels * 4
        data_bytes = num_frames * block_align
        fmt = struct.pack("<HHIIHHH", 3, self.num_channels, self.sample_rate, self.sample_rate * block_align, block_align, 32, 0)
        fact = struct.pack("<I", num_frames)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
        return b"RIFF" + struct.pack("<I", len(body) + 8 + data_bytes) + body + b"data" + struct.pack("<I", data_bytes)


def _open_container(path):
    if not os.path.isfile(path):
        raise AudioInputError(f"{path}: no such file; check the path.")
    if os.path.getsize(path) == 0:
        raise AudioInputError(f"{path}: the file is empty (0 bytes); export the audio again.")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as error:
        raise AudioInputError(f"{path}: not a readable audio or video file ({error}); the file may be corrupt or truncated, export it again.") from error


def _audio_stream(container, path):
    if not container.streams.audio:
        raise AudioInputError(f"{path}: the file has no audio stream; give a file that contains sound.")
    stream = container.streams.audio[0]
    if stream.codec_context is None or stream.codec_context.sample_rate <= 0:
        raise AudioInputError(f"{path}: the audio codec is not supported by FFmpeg here; convert the file to WAV or FLAC.")
    return stream


def _stream_info(stream, container) -> AudioInfo:
    context = stream.codec_context
    names = tuple(channel.name for channel in context.layout.channels) if context.layout else ()
    num_channels = context.channels or len(names)
    if len(names) != num_channels or "NONE" in names:
        names = _default_names(num_channels)
    stream_duration = float(stream.duration * stream.time_base) if stream.duration is not None and stream.time_base else None
    if container.format.name == "wav":
        # FFmpeg derives a WAV's duration from the file size; the header's data size tells a truncated file.
        stream_duration = _wav_header_duration(container.name, context) or stream_duration
    declared = stream_duration if stream_duration is not None else (container.duration / 1_000_000 if container.duration else None)
    return AudioInfo(context.sample_rate, num_channels, names, context.name, declared, stream_duration)


def _wav_header_duration(path, context) -> Optional[float]:
    """Duration from the RIFF "data" chunk size, or None for streamed WAVs whose size field is unset."""
    with open(path, "rb") as handle:
        header = handle.read(4096)
    position, block_align = 12, None
    while position + 8 <= len(header):
        chunk_id, size = header[position:position + 4], struct.unpack("<I", header[position + 4:position + 8])[0]
        if chunk_id == b"fmt " and position + 22 <= len(header):
            block_align = struct.unpack("<H", header[position + 20:position + 22])[0]
        if chunk_id == b"data":
            if size in (0, 0xFFFFFFFF) or not block_align or not context.name.startswith("pcm_"):
                return None
            return size // block_align / context.sample_rate
        position += 8 + size + (size & 1)
    return None


def _default_names(num_channels: int) -> tuple:
    if num_channels == 6:
        return _SMPTE_5_1
    return ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR")[:num_channels] if num_channels > 2 else ("FL", "FR")[:num_channels] if num_channels == 2 else ("FC",)


def _decode_frames(container, stream, path, start, info):
    if start > 1.0 and stream.time_base:
        target = int((start - 0.5) / stream.time_base) + (stream.start_time or 0)
        try:
            container.seek(target, stream=stream, backward=True)
        except av.FFmpegError:
            container.seek(0, stream=stream)
    try:
        for frame in container.decode(stream):
            if frame.sample_rate != info.sample_rate:
                raise AudioInputError(f"{path}: the sample rate changes inside the stream ({info.sample_rate} -> {frame.sample_rate} Hz); re-encode the file at one rate.")
            yield frame
    except av.FFmpegError as error:
        raise AudioInputError(f"{path}: decoding failed ({error}); the file is corrupt or uses an unsupported codec ({info.codec}); convert it to WAV or FLAC.") from error


def _frame_to_array(frame, info, path) -> np.ndarray:
    data = frame.to_ndarray()
    sample_format = frame.format
    if not sample_format.is_planar:
        data = data.reshape(-1, info.num_channels).T
    if data.shape[0] != info.num_channels:
        raise AudioInputError(f"{path}: the channel count changes inside the stream; re-encode the file with a fixed layout.")
    kind = sample_format.name.rstrip("p")
    if kind == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    if kind in _INTEGER_SCALES:
        return (data.astype(np.float64) / _INTEGER_SCALES[kind]).astype(np.float32)
    return data.astype(np.float32, copy=False)


def _frame_position(frame, stream, rate, path) -> int:
    if frame.pts is None or not frame.time_base:
        raise AudioInputError(f"{path}: the file has no timestamps, so it cannot be read from an offset; convert it to WAV first.")
    return round((frame.pts - (stream.start_time or 0)) * frame.time_base * rate)


def _split_tail(arrays, tail_length):
    joined = np.concatenate(arrays, axis=1)
    cut = joined.shape[1] - tail_length
    return joined[:, :cut], [joined[:, cut:]]


def _trim_codec_padding(block, info, produced_before, duration, start):
    """Cuts decoder padding past the stream's declared end (e.g. AAC's last frame), at most MAX_TRAILING_PADDING."""
    if duration is not None or start > 0 or info.stream_duration is None:
        return block
    excess = produced_before + block.shape[1] - round(info.stream_duration * info.sample_rate)
    if 0 < excess <= MAX_TRAILING_PADDING:
        return block[:, : block.shape[1] - excess]
    return block


def _checked_block(array, path, produced) -> torch.Tensor:
    block = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    check_finite(block, path, at_sample=produced - block.shape[1])
    return block


def check_finite(samples: torch.Tensor, where, at_sample: int = 0) -> None:
    finite = torch.isfinite(samples)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        first = at_sample + int((~finite).any(dim=0).nonzero()[0])
        raise AudioInputError(f"{where}: {bad} NaN or infinite samples (first at sample {first}); the audio is damaged, export it again or replace those samples.")


def _no_samples_error(path, info, start):
    if start > 0 and info.declared_duration is not None and start >= info.declared_duration:
        return AudioInputError(f"{path}: start {start:.3f} s is past the end of the audio ({info.declared_duration:.3f} s); choose an earlier start.")
    return AudioInputError(f"{path}: the audio stream contains no samples (zero length); give a file with sound in it.")


def _check_not_truncated(path, info, produced) -> None:
    if info.declared_duration is None:
        return
    decoded = produced / info.sample_rate
    if info.declared_duration - decoded > max(TRUNCATION_TOLERANCE_SECONDS, 0.02 * info.declared_duration):
        raise AudioInputError(
            f"{path}: decoded {decoded:.3f} s of audio but the file declares {info.declared_duration:.3f} s; "
            "the file is truncated or damaged, export or download it again."
        )


def _expected_samples(info, start, duration, rate) -> int:
    seconds = duration if duration is not None else max(0.0, (info.declared_duration or 60.0) - start)
    return max(1, math.ceil(seconds * rate) + 1)
