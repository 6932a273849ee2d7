"""What the nodes read and list: names that cannot leave ComfyUI's folders, one entry per model, the demo's files,
the shipped example inputs (listed, read, copied on first listing, never at import), validation messages on the
right input, and the template order."""

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mtv_core import demo
from mtv_core.audio import Waveform, save_wav
from mtv_core.errors import AudioInputError, MTVError
from nodes import comfy_adapter as comfy
from nodes import folders, model_files, sampling
from nodes.audio import MTVLoadAudio
from nodes.loaders import MTVDemixerLoader, MTVModelLoader

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def comfy_dirs(tmp_path, monkeypatch):
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
def test_input_names_cannot_leave_the_input_folder(comfy_dirs, name):
    message = folders.check_input_file(name)
    assert message is not True and "input folder" in message
    with pytest.raises(MTVError):
        folders.input_path(name)


@pytest.mark.parametrize("name", ESCAPES)
def test_output_and_model_names_cannot_leave_their_folders(comfy_dirs, name):
    with pytest.raises(MTVError, match="output folder"):
        folders.output_folder(name)
    assert model_files.check_model_name("diffusion_models", name) is not True


def test_a_hugging_face_folder_is_one_entry_and_hidden_files_are_not_listed(comfy_dirs):
    models, _, _ = comfy_dirs
    wav2vec = models / "audio_encoders" / "wav2vec2-base-960h"
    wav2vec.mkdir(parents=True)
    (wav2vec / "config.json").write_text("{}")
    (wav2vec / "model.safetensors").write_bytes(b"x")
    (models / "audio_encoders" / "small.safetensors").write_bytes(b"x")
    (models / "audio_encoders" / ".partial.safetensors").write_bytes(b"x")
    (models / "audio_encoders" / "notes.txt").write_text("x")
    listed = model_files.list_model_files("audio_encoders")
    assert listed[0] == comfy.DEMO_CHOICE
    assert listed[1:] == ["small.safetensors", "wav2vec2-base-960h/"]


def test_the_demo_demixer_is_labelled_listed_last_and_never_the_default(comfy_dirs):
    models, _, _ = comfy_dirs
    choices = MTVDemixerLoader.INPUT_TYPES()["required"]["model_1"][0]
    assert choices == [comfy.NO_DEMIXER, "fetch: htdemucs (demucs htdemucs, ~168 MB)", "demo (built-in, synthetic sounds only)"]
    (models / "demucs").mkdir()
    (models / "demucs" / "cdx23.safetensors").write_bytes(b"x")
    required, optional = (MTVDemixerLoader.INPUT_TYPES()[key] for key in ("required", "optional"))
    assert required["model_1"][0] == ["cdx23.safetensors", "fetch: htdemucs (demucs htdemucs, ~168 MB)", comfy.DEMO_DEMIXER_CHOICE]
    assert optional["model_2"][0] == ["none", "cdx23.safetensors", comfy.DEMO_DEMIXER_CHOICE]
    for name in (comfy.DEMO_DEMIXER_CHOICE, comfy.DEMO_CHOICE):  # the old label, in graphs saved before, still loads
        assert model_files.model_path(comfy.DEMUCS_FOLDER, name) == demo.DEMIXER
        assert MTVDemixerLoader.VALIDATE_INPUTS(name) is True
    assert MTVModelLoader.VALIDATE_INPUTS(comfy.DEMO_DEMIXER_CHOICE) is not True  # the demixer's label only


def test_without_the_demo_an_empty_demixer_list_says_what_to_do(comfy_dirs, monkeypatch):
    monkeypatch.setattr(demo, "DEMIXER", demo.DEMO_DIR / "absent.safetensors")
    choices = MTVDemixerLoader.INPUT_TYPES()["required"]["model_1"][0]
    assert choices == [comfy.NO_DEMIXER, "fetch: htdemucs (demucs htdemucs, ~168 MB)"]  # the default downloads nothing
    message = MTVDemixerLoader.VALIDATE_INPUTS(comfy.NO_DEMIXER)
    assert "models/demucs" in message and "fetch: htdemucs" in message and "Stems From Audio" in message


def test_a_missing_model_file_is_named_with_the_folder(comfy_dirs):
    message = MTVModelLoader.VALIDATE_INPUTS("mtv_single.safetensors")
    assert "'mtv_single.safetensors' not found in" in message and "diffusion_models" in message
    assert MTVModelLoader.VALIDATE_INPUTS(comfy.DEMO_CHOICE) is True


def test_load_audio_validates_its_file_once_and_before_the_run(comfy_dirs):
    _, inputs, _ = comfy_dirs
    save_wav(inputs / "tone.wav", Waveform(torch.from_numpy(np.sin(np.arange(8000) / 5).astype(np.float32))[None], 8000))
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00garbage" * 20)
    assert MTVLoadAudio.VALIDATE_INPUTS("tone.wav") is True
    assert "not in ComfyUI's input folder" in MTVLoadAudio.VALIDATE_INPUTS("missing.wav")
    assert "not a readable audio or video file" in MTVLoadAudio.VALIDATE_INPUTS("broken.wav")
    assert MTVLoadAudio.VALIDATE_INPUTS("mtv-demo/speech.wav") is True  # the built-in example, not copied here


def test_load_audio_names_the_start_when_it_is_past_the_end(comfy_dirs):
    _, inputs, _ = comfy_dirs
    save_wav(inputs / "tone.wav", Waveform(torch.zeros(1, 8000), 8000))
    audio = MTVLoadAudio().load(0.5, 0.25, "tone.wav")[0]
    assert audio["waveform"].shape == (1, 1, 2000) and audio["sample_rate"] == 8000
    with pytest.raises(MTVError, match="input 'start_seconds': start 1.5 s is at or past the end of 'tone.wav' \\(1.00 s\\)"):
        MTVLoadAudio().load(1.5, 0.0, "tone.wav")


def test_load_audio_lists_the_shipped_examples_and_reads_them_where_the_input_folder_lacks_them(comfy_dirs):
    _, inputs, _ = comfy_dirs
    (inputs / "mtv_example.wav").write_bytes(b"the user's own file")
    choices = MTVLoadAudio.INPUT_TYPES()["required"]["audio"][0]
    assert choices[:2] == ["mtv_example.wav", "mtv_keyframe.png"]  # outside ComfyUI nothing filters by content type
    assert choices[2:] == [f"mtv-demo/{p.name}" for p in sorted(demo.EXAMPLE.iterdir()) if p.suffix in (".wav", ".mp4")]
    assert folders.input_path("mtv_example.wav") == inputs / "mtv_example.wav"  # the user's file wins
    assert folders.input_path("mtv_keyframe.png") == comfy.EXAMPLE_INPUTS / "mtv_keyframe.png"
    assert folders.input_path("mtv-demo/music.wav") == demo.EXAMPLE / "music.wav"
    assert sorted(p.name for p in inputs.iterdir()) == ["mtv_example.wav"]  # outside ComfyUI nothing is copied


@pytest.fixture
def comfy_input_folder(tmp_path, monkeypatch):
    """ComfyUI's folder_paths as Load Audio reads it: its input folder, and its filter by content type."""
    inputs = tmp_path / "input"
    kinds = {".wav": "audio", ".mp4": "video", ".png": "image"}
    fp = types.SimpleNamespace(get_input_directory=lambda: str(inputs), filter_files_content_types=lambda files, wanted: [
        f for f in files if kinds.get(Path(f).suffix) in wanted])
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    folders.place_shipped_inputs.cache_clear()
    yield inputs
    folders.place_shipped_inputs.cache_clear()


def test_load_audios_first_list_puts_the_examples_in_the_input_folder_never_over_a_users_file(comfy_input_folder):
    inputs = comfy_input_folder
    (inputs / "mtv-demo").mkdir(parents=True)
    (inputs / "mtv-demo" / "speech.wav").write_bytes(b"the user's own file")
    (inputs / "mtv_keyframe.png").write_bytes(b"the user's own picture")
    choices = MTVLoadAudio.INPUT_TYPES()["required"]["audio"][0]
    assert choices[0] == "mtv_example.wav" and choices[-1].startswith("mtv-demo/") and "mtv_keyframe.png" not in choices
    assert (inputs / "mtv-demo" / "speech.wav").read_bytes() == b"the user's own file"
    assert (inputs / "mtv_keyframe.png").read_bytes() == b"the user's own picture"
    assert (inputs / "mtv-demo" / "music.wav").read_bytes() == (demo.EXAMPLE / "music.wav").read_bytes()
    assert (inputs / "mtv-demo" / "clip.mp4").is_file() and not (inputs / "mtv-demo" / "prompt.txt").exists()
    assert (inputs / "mtv_example.wav").read_bytes() == (comfy.EXAMPLE_INPUTS / "mtv_example.wav").read_bytes()
    (inputs / "mtv_example.wav").unlink()
    MTVLoadAudio.INPUT_TYPES()
    assert not (inputs / "mtv_example.wav").exists()  # once per server: a file the user deleted stays deleted


def test_importing_the_pack_copies_nothing_and_adds_no_server_middleware(tmp_path):
    code = f"""
import sys, types
app = types.SimpleNamespace(middlewares=[], router=None)
sys.modules["server"] = types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=types.SimpleNamespace(app=app)))
sys.modules["folder_paths"] = types.SimpleNamespace(
    get_input_directory=lambda: {str(tmp_path / "input")!r}, models_dir={str(tmp_path / "models")!r},
    folder_names_and_paths={{}})
import nodes
assert app.middlewares == [], app.middlewares
print(sorted(sys.modules["folder_paths"].folder_names_and_paths))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['demucs']"]  # the model folder it adds, and nothing written
    assert list(tmp_path.iterdir()) == []


def test_the_demo_template_sorts_first_by_name():
    """ComfyUI serves a pack's templates in directory order; its template browser sorts them A-Z on request."""
    titles = sorted((p.stem for p in (ROOT / "workflows").glob("*.json")), key=str.casefold)
    assert titles[0].startswith(comfy.DEMO_WORKFLOW_PREFIX) and len(titles) == 8


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


class StandInProgressBar:
    """comfy.utils.ProgressBar as the server's hook sees it: every (value, max, preview) it is moved to."""

    moves = []

    def __init__(self, total, node_id=None):
        self.total, self.current = total, 0

    def update_absolute(self, value, total=None, preview=None):
        self.total = self.total if total is None else total
        self.current = min(value, self.total)
        self.moves.append((self.current, self.total, preview))


def stand_in_comfy(monkeypatch, preview_method: str):
    """ComfyUI's comfy.utils and comfy.cli_args as the server started with --preview-method."""
    import enum

    class LatentPreviewMethod(enum.Enum):
        NoPreviews, Auto, Latent2RGB, TAESD = "none", "auto", "latent2rgb", "taesd"

    utils, cli_args = types.ModuleType("comfy.utils"), types.ModuleType("comfy.cli_args")
    utils.ProgressBar = StandInProgressBar
    cli_args.LatentPreviewMethod = LatentPreviewMethod
    cli_args.args = types.SimpleNamespace(preview_method=LatentPreviewMethod(preview_method), preview_size=384)
    package = types.ModuleType("comfy")
    package.utils, package.cli_args = utils, cli_args
    for name, module in (("comfy", package), ("comfy.utils", utils), ("comfy.cli_args", cli_args)):
        monkeypatch.setitem(sys.modules, name, module)
    StandInProgressBar.moves = []


@pytest.fixture(scope="module")
def sampler_inputs(comfy_folders):
    """Everything MTV Sampler takes in the keyframe workflow (tiny models), run once; the sampler itself is left out."""
    import json
    from pathlib import Path

    from graph_runner import run_workflow

    models, inputs, outputs = comfy_folders
    graph = json.loads((Path(__file__).resolve().parents[2] / "workflows" / "api" / "mtv_start_image_keyframe.json").read_text())
    sampler = graph.pop("10")
    sampler["inputs"].update(steps=2, sampler="ddim")
    with pytest.MonkeyPatch.context() as patch:
        for variable, folder in (("MTV_MODELS_DIR", models), ("MTV_INPUT_DIR", inputs), ("MTV_OUTPUT_DIR", outputs)):
            patch.setenv(variable, str(folder))
        import graph_runner

        patch.setattr(graph_runner.PreviewAudio, "output_dir", outputs)
        patch.setattr(graph_runner.LoadImage, "input_dir", inputs)
        upstream = run_workflow({key: node for key, node in graph.items() if key not in ("11", "12")})
    return {"10": sampler}, upstream


def test_with_previews_on_the_sampler_sends_a_jpeg_every_step_then_counts_decoder_slices(sampler_inputs, monkeypatch):
    from graph_runner import run_workflow

    from mtv_core.pipeline.preview import OFFICIAL_FACTORS, LatentPreview

    stand_in_comfy(monkeypatch, "auto")
    frames, latents = run_workflow(*sampler_inputs)["10"]
    moves = StandInProgressBar.moves
    assert [(value, total) for value, total, _ in moves] == [(0, 2), (1, 2), (2, 2)] + [(done, 6) for done in range(7)]
    previews = [preview for _, _, preview in moves]
    assert previews[0] is None and previews[3:] == [None] * 7  # the start and the decoding carry no image
    for kind, image, size in previews[1:3]:
        assert (kind, size, image.mode, image.size) == ("JPEG", 384, "RGB", (160, 32))  # 3 frames of 6x4 latents, x8
    # DDIM's last estimate is the sample itself: the last preview is the sampled latents through the VAE's factors.
    expected = LatentPreview.load(OFFICIAL_FACTORS).image(latents.samples)
    assert np.array_equal(np.asarray(previews[2][1]), expected)


def test_with_previews_off_no_preview_is_made(sampler_inputs, monkeypatch):
    from graph_runner import run_workflow

    from mtv_core.pipeline.preview import LatentPreview

    stand_in_comfy(monkeypatch, "none")
    monkeypatch.setattr(LatentPreview, "image", lambda *_: pytest.fail("a preview was computed with previews off"))
    run_workflow(*sampler_inputs)
    moves = StandInProgressBar.moves
    assert [(value, total, preview) for value, total, preview in moves] == \
        [(0, 2, None), (1, 2, None), (2, 2, None)] + [(done, 6, None) for done in range(7)]


def test_mtv_decode_moves_the_bar_per_decoder_slice_and_stops_on_cancel(sampler_inputs, monkeypatch):
    from nodes.payloads import MTVLatents
    from nodes.sampling import MTVDecode

    stand_in_comfy(monkeypatch, "none")
    vae = sampler_inputs[1]["2"][0]
    latents = MTVLatents(torch.randn(1, 13, 16, 4, 6, generator=torch.Generator().manual_seed(0)))
    MTVDecode().decode(vae, latents, 0)
    assert StandInProgressBar.moves == [(done, 6, None) for done in range(7)]

    class Cancelled(Exception):
        pass

    def cancel_after_two_slices():
        if len(StandInProgressBar.moves) == 3:
            raise Cancelled  # what comfy.model_management raises when the user presses Cancel

    StandInProgressBar.moves = []
    monkeypatch.setattr(sampling, "interrupt_check", lambda: cancel_after_two_slices)
    with pytest.raises(Cancelled):
        MTVDecode().decode(vae, latents, 0)
    assert StandInProgressBar.moves == [(0, 6, None), (1, 6, None), (2, 6, None)]


def test_demix_stems_gates_the_speech_stem_before_the_first_line_unless_told_not_to():
    from mtv_core.audio import load_audio
    from mtv_core.checkpoints import load_demixer
    from nodes.audio import MTVDemixStems

    audio = comfy.to_comfy_audio(load_audio(demo.example_audio()))
    demixer = load_demixer(demo.DEMIXER)
    gated = comfy.from_comfy_audio(MTVDemixStems().demix(audio, demixer)[1])
    kept = comfy.from_comfy_audio(MTVDemixStems().demix(audio, demixer, speech_gate_dbfs=-200.0)[1])
    before_speech = slice(0, round(0.15 * gated.sample_rate))  # the example's first line starts at 0.2 s
    assert gated.samples[:, before_speech].abs().max() == 0 < kept.samples[:, before_speech].abs().max()
    in_speech = slice(round(0.35 * gated.sample_rate), round(0.45 * gated.sample_rate))
    assert torch.equal(gated.samples[:, in_speech], kept.samples[:, in_speech])
