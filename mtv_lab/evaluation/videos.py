"""Reading the videos and audio an evaluation compares, with the checks that make the comparison fair."""

from pathlib import Path

import av
import cv2
import numpy as np

from mtv_core.audio.io import load_audio
from mtv_core.errors import ConfigError
from mtv_core.spec import STEMS

from ..world.scene import ClipSpec


def read_frames(path: Path) -> tuple[np.ndarray, float]:
    """All frames of the first video stream as uint8 (N, H, W, 3) RGB, and its frame rate."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
    except (av.FFmpegError, IndexError, ValueError) as error:
        raise ConfigError(f"video {str(path)!r} cannot be read ({error}); pass an mp4 with a video stream") from error
    return frames, fps


def clip_frames(path: Path, spec: ClipSpec) -> np.ndarray:
    """A generated clip's frames, checked against the world clip's frame rate and resized to its size."""
    frames, fps = read_frames(path)
    if abs(fps - spec.fps) > 1e-3:
        raise ConfigError(f"video {str(path)!r} runs at {fps:g} fps but world clip {spec.name} at {spec.fps:g} fps; "
                          f"generate at {spec.fps:g} fps so frames and sound line up")
    if frames.shape[1:3] != (spec.height, spec.width):

        frames = np.stack([cv2.resize(frame, (spec.width, spec.height), interpolation=cv2.INTER_AREA) for frame in frames])
    return frames


def clip_audio(world: Path, spec: ClipSpec) -> np.ndarray:
    """The clip's mono mix: the sum of its three stems (what a model is conditioned on)."""
    stems = [load_audio(world / f"{spec.name}_{name}.wav", sample_rate=spec.sample_rate).samples.mean(dim=0).numpy()
             for name in STEMS]
    length = min(len(stem) for stem in stems)
    return np.clip(sum(stem[:length] for stem in stems), -1, 1)
