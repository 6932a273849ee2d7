import av
import pytest
import torch

from mtv_core.errors import GenerationError
from mtv_core.pipeline.video import write_mp4


def _read(path):
    frames, samples = [], 0
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate if container.streams.audio else None
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
                else:
                    samples += frame.samples
    return torch.stack(frames), samples, rate


def test_mp4_has_every_frame_and_audio_of_the_same_duration(tmp_path):
    frames = torch.zeros(61, 32, 48, 3, dtype=torch.uint8)
    frames[:, :, :, 0] = torch.linspace(0, 240, 61).round().to(torch.uint8)[:, None, None]
    audio = 0.3 * torch.sin(torch.arange(16000 * 4) / 16000 * 2 * torch.pi * 440).repeat(2, 1)  # 4 s: longer
    path = write_mp4(tmp_path / "out.mp4", frames, 24, audio, 16000)
    decoded, samples, rate = _read(path)
    assert decoded.shape == (61, 32, 48, 3)
    assert (decoded[:, 16, 24, 0].float() - frames[:, 16, 24, 0].float()).abs().max() <= 6
    # AAC decodes whole 1024-sample frames: the sound ends within one AAC frame of the picture.
    assert abs(samples / rate - 61 / 24) <= 1024 / rate
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_silent_mp4(tmp_path):
    decoded, samples, rate = _read(write_mp4(tmp_path / "silent.mp4", torch.zeros(3, 16, 16, 3, dtype=torch.uint8), 24))
    assert decoded.shape[0] == 3 and rate is None


@pytest.mark.parametrize("name, fragment", [("missing/out.mp4", "does not exist"), ("out.avi", "must end in .mp4")])
def test_unwritable_outputs_are_refused(tmp_path, name, fragment):
    with pytest.raises(GenerationError, match=fragment):
        write_mp4(tmp_path / name, torch.zeros(1, 16, 16, 3, dtype=torch.uint8), 24)


def test_the_same_frames_and_sound_always_make_the_same_file(tmp_path):
    """Textured, moving frames (where x264's rate control has choices to make) and a tone, written three times."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.linspace(0, 6, 96)[None, :, None], torch.linspace(0, 4, 64)[:, None, None]
    frames = torch.stack([((torch.sin(x + t / 5) * torch.cos(y - t / 7) + 1) * 120
                           + torch.randn(64, 96, 3, generator=generator) * 8).clamp(0, 255) for t in range(60)]).to(torch.uint8)
    audio = 0.3 * torch.sin(torch.arange(16000 * 3) / 16000 * 2 * torch.pi * 330)[None]
    files = {write_mp4(tmp_path / f"take{i}.mp4", frames, 24, audio, 16000).read_bytes() for i in range(3)}
    assert len(files) == 1


def test_streamed_segments_and_sound_write_the_same_file_as_whole_tensors(tmp_path):
    generator = torch.Generator().manual_seed(1)
    frames = (torch.rand(70, 32, 48, 3, generator=generator) * 255).to(torch.uint8)
    audio = 0.2 * torch.randn(2, 16000 * 4, generator=generator)  # longer than the 61 frames kept: cut
    whole = write_mp4(tmp_path / "whole.mp4", frames[:61], 24, audio, 16000)
    streamed = write_mp4(tmp_path / "streamed.mp4", (frames[i:i + 22] for i in range(0, 70, 22)), 24,
                         (audio[:, i:i + 5000] for i in range(0, audio.shape[1], 5000)), 16000, frame_count=61)
    assert streamed.read_bytes() == whole.read_bytes()
    decoded, samples, _ = _read(streamed)
    assert decoded.shape[0] == 61 and abs(samples - round(61 / 24 * 16000)) < 1024
