"""What the nodes read and list: names that cannot leave ComfyUI's folders, one entry per model, the demo's files,
validation messages on the right input, and the template order."""

import sys
import types

import numpy as np
import pytest
import torch

from mtv_core import demo
from mtv_core.audio import Waveform, save_wav
from mtv_core.errors import AudioInputError, MTVError
from nodes import comfy_adapter as comfy
from nodes.audio import MTVLoadAudio
from nodes.loaders import MTVDemixerLoader, MTVModelLoader


@pytest.fixture
def folders(tmp_path, monkeypatch):
    models, inputs, outputs = tmp_path / "models", tmp_path / "input", tmp_path / "output"
    for folder in (models, inputs, outputs):
        folder.mkdir()
    monkeypatch.setenv("MTV_MODELS_DIR", str(models))
    monkeypatch.setenv("MTV_INPUT_DIR", str(inputs))
    monkeypatch.setenv("MTV_OUTPUT_DIR", str(outputs))
    (tmp_path / "secret.wav").write_bytes(b"not yours")
    return models, inputs, outputs


ESCAPES = ["../secret.wav", "/etc/passwd", "mtv-demo/../../secret.wav", "a/../../secret.wav", "./x.wav", "x\x00.wav",
           "..\\secret.wav", "", 7]


@pytest.mark.parametrize("name", ESCAPES)
def test_input_names_cannot_leave_the_input_folder(folders, name):
    message = comfy.check_input_file(name)
    assert message is not True and "input folder" in message
    with pytest.raises(MTVError):
        comfy.input_path(name)


@pytest.mark.parametrize("name", ESCAPES)
def test_output_and_model_names_cannot_leave_their_folders(folders, name):
    with pytest.raises(MTVError, match="output folder"):
        comfy.output_folder(name)
    assert comfy.check_model_name("diffusion_models", name) is not True


def test_a_hugging_face_folder_is_one_entry_and_hidden_files_are_not_listed(folders):
    models, _, _ = folders
    wav2vec = models / "audio_encoders" / "wav2vec2-base-960h"
    wav2vec.mkdir(parents=True)
    (wav2vec / "config.json").write_text("{}")
    (wav2vec / "model.safetensors").write_bytes(b"x")
    (models / "audio_encoders" / "small.safetensors").write_bytes(b"x")
    (models / "audio_encoders" / ".partial.safetensors").write_bytes(b"x")
    (models / "audio_encoders" / "notes.txt").write_text("x")
    listed = comfy.list_model_files("audio_encoders")
    assert listed[0] == comfy.DEMO_CHOICE
    assert listed[1:] == ["small.safetensors", "wav2vec2-base-960h/"]


def test_a_fresh_install_offers_the_demo_demixer_first_and_the_default_downloads_nothing(folders):
    choices = MTVDemixerLoader.INPUT_TYPES()["required"]["model_1"][0]
    assert choices == [comfy.DEMO_CHOICE, "fetch: htdemucs (demucs htdemucs, ~168 MB)"]
    assert comfy.model_path(comfy.DEMUCS_FOLDER, comfy.DEMO_CHOICE) == demo.DEMIXER


def test_without_the_demo_an_empty_demixer_list_says_what_to_do(folders, monkeypatch):
    monkeypatch.setattr(demo, "DEMIXER", demo.DEMO_DIR / "absent.safetensors")
    choices = MTVDemixerLoader.INPUT_TYPES()["required"]["model_1"][0]
    assert choices == [comfy.NO_DEMIXER, "fetch: htdemucs (demucs htdemucs, ~168 MB)"]  # the default downloads nothing
    message = MTVDemixerLoader.VALIDATE_INPUTS(comfy.NO_DEMIXER)
    assert "models/demucs" in message and "fetch: htdemucs" in message and "Stems From Audio" in message


def test_a_missing_model_file_is_named_with_the_folder(folders):
    message = MTVModelLoader.VALIDATE_INPUTS("mtv_single.safetensors")
    assert "'mtv_single.safetensors' not found in" in message and "diffusion_models" in message
    assert MTVModelLoader.VALIDATE_INPUTS(comfy.DEMO_CHOICE) is True


def test_load_audio_validates_its_file_once_and_before_the_run(folders):
    _, inputs, _ = folders
    save_wav(inputs / "tone.wav", Waveform(torch.from_numpy(np.sin(np.arange(8000) / 5).astype(np.float32))[None], 8000))
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00garbage" * 20)
    assert MTVLoadAudio.VALIDATE_INPUTS("tone.wav") is True
    assert "not in ComfyUI's input folder" in MTVLoadAudio.VALIDATE_INPUTS("missing.wav")
    assert "not a readable audio or video file" in MTVLoadAudio.VALIDATE_INPUTS("broken.wav")
    assert MTVLoadAudio.VALIDATE_INPUTS("mtv-demo/speech.wav") is True  # the built-in example, not copied here


def test_load_audio_names_the_start_when_it_is_past_the_end(folders):
    _, inputs, _ = folders
    save_wav(inputs / "tone.wav", Waveform(torch.zeros(1, 8000), 8000))
    audio = MTVLoadAudio().load(0.5, 0.25, "tone.wav")[0]
    assert audio["waveform"].shape == (1, 1, 2000) and audio["sample_rate"] == 8000
    with pytest.raises(MTVError, match="input 'start_seconds': start 1.5 s is at or past the end of 'tone.wav' \\(1.00 s\\)"):
        MTVLoadAudio().load(1.5, 0.0, "tone.wav")


def test_the_demo_example_is_copied_into_the_input_folder_once_and_never_over_a_user_file(tmp_path, monkeypatch):
    inputs = tmp_path / "input"
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(get_input_directory=lambda: str(inputs)))
    (inputs / "mtv-demo").mkdir(parents=True)
    (inputs / "mtv-demo" / "speech.wav").write_bytes(b"the user's own file")
    comfy.install_demo_inputs()
    assert (inputs / "mtv-demo" / "speech.wav").read_bytes() == b"the user's own file"
    from mtv_core import demo

    assert (inputs / "mtv-demo" / "music.wav").read_bytes() == (demo.EXAMPLE / "music.wav").read_bytes()
    assert (inputs / "mtv-demo" / "clip.mp4").is_file() and not (inputs / "mtv-demo" / "prompt.txt").exists()


def test_the_template_list_puts_the_demo_first_and_leaves_other_packs_alone():
    listing = {"comfyui-mtv": ["MTV Talking character", "MTV Demo - built-in model, nothing to download", "MTV Music mood"],
               "other-pack": ["b", "a"]}
    ordered = comfy.demo_first(listing)
    assert ordered["comfyui-mtv"] == ["MTV Demo - built-in model, nothing to download", "MTV Music mood", "MTV Talking character"]
    assert ordered["other-pack"] == ["b", "a"]
    assert comfy.demo_first(["not", "a", "mapping"]) == ["not", "a", "mapping"]


def test_comfy_audio_round_trip():
    waveform = Waveform(torch.randn(2, 1000), 22050)
    audio = comfy.to_comfy_audio(waveform)
    assert audio["waveform"].shape == (1, 2, 1000) and audio["sample_rate"] == 22050
    back = comfy.from_comfy_audio(audio)
    assert torch.equal(back.samples, waveform.samples) and back.sample_rate == 22050
    with pytest.raises(AudioInputError, match="batch of 2"):
        comfy.from_comfy_audio({"waveform": torch.zeros(2, 1, 10), "sample_rate": 8000})
    with pytest.raises(AudioInputError, match="NaN"):
        comfy.from_comfy_audio({"waveform": torch.full((1, 1, 10), float("nan")), "sample_rate": 8000})
