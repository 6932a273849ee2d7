"""mp4 out: H.264 video and AAC audio through PyAV, written to a temporary file and renamed into place.

The audio is cut or zero-padded to exactly frames / fps seconds, so picture and sound end together.
"""

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..errors import GenerationError

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


def fit_audio(samples: torch.Tensor, sample_rate: int, frame_count: int, fps: float) -> np.ndarray:
    """(C, T) audio cut or zero-padded to frame_count / fps seconds, as float32 (C, N), at most stereo."""
    samples = samples.float()
    if samples.shape[0] > 2:
        samples = samples[:2]
    length = int(round(frame_count / fps * sample_rate))
    fitted = torch.zeros(samples.shape[0], length)
    fitted[:, :min(length, samples.shape[1])] = samples[:, :length]
    return fitted.clamp(-1, 1).numpy()


def write_mp4(path, frames: torch.Tensor, fps: float, audio: torch.Tensor | None = None,
              sample_rate: int | None = None, crf: int = 18) -> Path:
    """frames: (F, H, W, 3) uint8. audio: (C, T) float in [-1, 1] at sample_rate, or None for a silent video."""

    path = check_writable(path)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise GenerationError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    temporary = path.with_name(f".{path.stem}.partial.mp4")
    try:
        with av.open(str(temporary), mode="w") as container:
            video = _add_video_stream(container, frames, fps, crf)
            sound = None if audio is None else _add_audio_stream(container, audio.shape[0], sample_rate)
            _encode_video(container, video, frames)
            if sound is not None:
                _encode_audio(container, sound, fit_audio(audio, sample_rate, frames.shape[0], fps))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


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


def _encode_video(container, stream, frames):
    for frame in frames.numpy():
        picture = av.VideoFrame.from_ndarray(frame[:stream.height, :stream.width], format="rgb24")
        container.mux(stream.encode(picture))
    container.mux(stream.encode())


def _encode_audio(container, stream, samples: np.ndarray):
    layout = stream.layout.name
    for start in range(0, samples.shape[1], AAC_FRAME):
        chunk = np.ascontiguousarray(samples[:, start:start + AAC_FRAME])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = stream.rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
