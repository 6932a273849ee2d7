"""mp4 out: H.264 video and AAC audio through PyAV, written to a temporary file and renamed into place.

The audio is cut or zero-padded to exactly frames / fps seconds, so picture and sound end together.
"""

import itertools
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..errors import GenerationError
from ..fileio import publish, temp_file_beside

AAC_FRAME = 1024


def check_writable(path) -> Path:
    """Fail early, before any long computation, if the output cannot be written."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise GenerationError(f"output {str(path)!r} must end in .mp4; give a file name like out.mp4")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise GenerationError(f"output folder {str(folder)!r} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise GenerationError(f"output {str(path)!r} cannot be written (no permission); choose another path")
    return path


def write_mp4(path, frames, fps: float, audio=None, sample_rate: int | None = None, crf: int = 18,
              frame_count: int | None = None) -> Path:
    """Write an H.264 + AAC mp4, atomically.

    frames: (F, H, W, 3) uint8, or an iterable of such blocks (segments) of which the first `frame_count` are
    written. audio: (C, T) float in [-1, 1] at `sample_rate`, an iterable of (C, n) blocks, or None for a silent
    video; it is cut or zero-padded to the video's length. Blocks are encoded as they come, so a long video never
    has to be held whole."""
    path = check_writable(path)
    blocks = iter([frames] if isinstance(frames, torch.Tensor) else frames)
    first = next(blocks, None)
    if first is None or first.dtype != torch.uint8 or first.ndim != 4 or first.shape[-1] != 3:
        got = "nothing" if first is None else f"{first.dtype} {tuple(first.shape)}"
        raise GenerationError(f"frames must be uint8 (F, H, W, 3), got {got}")
    descriptor, temporary = temp_file_beside(path)
    os.close(descriptor)
    try:
        with av.open(temporary, mode="w", format="mp4") as container:
            video = _add_video_stream(container, first, fps, crf)
            audio_blocks = None if audio is None else iter([audio] if isinstance(audio, torch.Tensor) else audio)
            first_audio = None if audio_blocks is None else next(audio_blocks, None)
            sound = None if first_audio is None else _add_audio_stream(container, min(first_audio.shape[0], 2), sample_rate)
            written = _encode_video(container, video, itertools.chain([first], blocks), frame_count)
            if sound is not None:
                length = int(round(written / fps * sample_rate))
                _encode_audio(container, sound, itertools.chain([first_audio], audio_blocks), length)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        publish(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def fit_audio(samples: torch.Tensor, sample_rate: int, frame_count: int, fps: float) -> np.ndarray:
    """(C, T) audio cut or zero-padded to frame_count / fps seconds, as float32 (C, N), at most stereo."""
    samples = samples.float()[:2]
    length = int(round(frame_count / fps * sample_rate))
    fitted = torch.zeros(samples.shape[0], length)
    fitted[:, :min(length, samples.shape[1])] = samples[:, :length]
    return fitted.clamp(-1, 1).numpy()


def _add_video_stream(container, frames, fps, crf):
    height, width = frames.shape[1:3]
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = width - width % 2, height - height % 2
    stream.pix_fmt = "yuv420p"
    # x264's macroblock-tree rate control (mbtree) makes different pictures from the same frames run to run (its
    # SIMD code sums floats in an order that depends on memory layout; with asm off it repeats). Without it the
    # same frames always give the same file, so a resumed or repeated job is byte-identical.
    stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
    return stream


def _add_audio_stream(container, channels, sample_rate):
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = "stereo" if channels == 2 else "mono"
    return stream


def _encode_video(container, stream, blocks, limit: int | None) -> int:
    written = 0
    for block in blocks:
        if limit is not None:
            block = block[:max(0, limit - written)]
        for frame in block.numpy():
            picture = av.VideoFrame.from_ndarray(frame[:stream.height, :stream.width], format="rgb24")
            container.mux(stream.encode(picture))
        written += block.shape[0]
        if limit is not None and written >= limit:
            break
    container.mux(stream.encode())
    return written


def _encode_audio(container, stream, blocks, length: int):
    """Exactly `length` samples from the blocks (cut, or padded with silence), in AAC frames."""
    channels, layout, pending, position = stream.layout.nb_channels, stream.layout.name, [], 0
    for block in itertools.chain(blocks, [None]):
        if block is not None:
            block = block.float()[:channels].clamp(-1, 1)[:, :max(0, length - position - sum(p.shape[1] for p in pending))]
            pending.append(block)
        ready = torch.cat(pending, dim=1) if pending else torch.zeros(channels, 0)
        if block is None:
            ready = torch.cat([ready, torch.zeros(channels, length - position - ready.shape[1])], dim=1)
        whole = ready.shape[1] if block is None else ready.shape[1] // AAC_FRAME * AAC_FRAME
        for start in range(0, whole, AAC_FRAME):
            chunk = np.ascontiguousarray(ready[:, start:start + AAC_FRAME].numpy())
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = stream.rate, position
            position += chunk.shape[1]
            container.mux(stream.encode(frame))
        pending = [ready[:, whole:]]
    container.mux(stream.encode())
