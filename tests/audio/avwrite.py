"""Writes test audio files with PyAV (the tests' own encoder, independent of mtv_core's decoder)."""

import av
import numpy as np

# container suffix -> (codec, sample format)
FORMATS = {
    "wav": ("pcm_s16le", "s16"),
    "flac": ("flac", "s16"),
    "mp3": ("libmp3lame", "fltp"),
    "ogg": ("vorbis", "fltp"),
    "opus": ("libopus", "flt"),
    "m4a": ("aac", "fltp"),
    "mp4": ("aac", "fltp"),
    "mov": ("aac", "fltp"),
    "mkv": ("libopus", "flt"),
    "webm": ("libopus", "flt"),
}


def write_audio(path, samples, sample_rate, codec=None, sample_format=None, video=False):
    """Encodes `samples` (float array [C, T] in [-1, 1]) into `path`; the suffix picks the container."""
    suffix = str(path).rsplit(".", 1)[-1]
    default_codec, default_format = FORMATS[suffix]
    codec = codec or default_codec
    sample_format = sample_format or default_format
    samples = np.asarray(samples, dtype=np.float32)
    channels = samples.shape[0]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    with av.open(str(path), "w") as container:
        video_stream = _add_video_stream(container) if video else None
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        stream.codec_context.options = {"strict": "experimental"}
        stream.format = sample_format
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, samples.shape[1], frame_size):
            block = samples[:, start:start + frame_size]
            frame = av.AudioFrame.from_ndarray(_to_format(block, sample_format), format=sample_format, layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if video_stream is not None:
            _encode_black_frame(container, video_stream)


def _to_format(block, sample_format):
    planar = sample_format.endswith("p")
    data = block if planar else block.T.reshape(1, -1)
    if sample_format.startswith("s16"):
        return np.ascontiguousarray(np.clip(np.round(data * 32767), -32768, 32767).astype(np.int16))
    return np.ascontiguousarray(data.astype(np.float32))


def _add_video_stream(container):
    codec = "libvpx-vp9" if container.format.name == "webm" else "mpeg4"
    stream = container.add_stream(codec, rate=24)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    return stream


def _encode_black_frame(container, stream):
    frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
    frame.pts = 0
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_video_only(path):
    with av.open(str(path), "w") as container:
        _encode_black_frame(container, _add_video_stream(container))
