"""A ComfyUI-like models / input / output layout holding tiny random models under the names the
shipped workflows use."""

import graph_runner
import numpy as np
import pytest
import torch
from graph_runner import AUDIO_SECONDS

from mtv_core import testing
from mtv_core.audio import Waveform, save_wav
from mtv_core.checkpoints import save_mtv_model, save_vae


def example_soundtrack(seconds=AUDIO_SECONDS, rate=16000) -> np.ndarray:
    """Voiced syllables (harmonics under an envelope), percussive clicks and a chord."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 3 * t) > 0.2)
    hits = np.zeros_like(t)
    for when in (0.5, 1.3, 2.2):
        start = int(when * rate)
        hits[start:start + 800] = np.exp(-np.arange(800) / 120) * np.random.default_rng(1).standard_normal(800)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    return (0.3 * voice + 0.5 * hits + 0.2 * chord).astype(np.float32)[None]


@pytest.fixture(scope="session")
def comfy_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy")
    models, inputs, outputs = root / "models", root / "input", root / "output"
    for variant, config in (("single", "tiny-single"), ("accm", "tiny-single"), ("multi", "tiny-multi")):
        model = testing.tiny_mtv_model(config, sample_height=4, sample_width=6, variant=variant)
        save_mtv_model(model, models / "diffusion_models" / f"mtv_{variant}.safetensors")
    save_vae(testing.tiny_vae(), models / "vae" / "cogvideox5b_vae.safetensors")
    testing.save_tiny_t5(models / "text_encoders" / "t5-v1_1-xxl")
    testing.save_tiny_wav2vec2(models / "audio_encoders" / "wav2vec2-base-960h")
    testing.save_tiny_demixer(models / "demucs" / "cdx23_dbb4db15.safetensors")
    inputs.mkdir()
    save_wav(inputs / "mtv_example.wav", Waveform(torch.from_numpy(example_soundtrack()), 16000))
    save_wav(inputs / "too_short.wav", Waveform(torch.zeros(1, 300), 16000))
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)).save(inputs / "mtv_keyframe.png")
    return models, inputs, outputs


@pytest.fixture
def comfy_env(comfy_folders, monkeypatch):
    models, inputs, outputs = comfy_folders
    monkeypatch.setenv("MTV_MODELS_DIR", str(models))
    monkeypatch.setenv("MTV_INPUT_DIR", str(inputs))
    monkeypatch.setenv("MTV_OUTPUT_DIR", str(outputs))
    monkeypatch.setattr(graph_runner.SaveVideo, "output_dir", outputs)
    monkeypatch.setattr(graph_runner.PreviewAudio, "output_dir", outputs)
    monkeypatch.setattr(graph_runner.LoadImage, "input_dir", inputs)
    return comfy_folders
