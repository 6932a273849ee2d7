"""End to end from real files through `python -m mtv_core generate`, and the early errors for bad input."""

import json

import av
import numpy as np
import pytest
from pipeline_models import make_tiny_model, make_tiny_vae

from mtv_core import testing
from mtv_core.cli import build_parser, main
from mtv_core.cli.generate import build_job
from mtv_core.cli.job import validate_job
from mtv_core.errors import ConfigError, GenerationError, ModelFileError
from mtv_core.pipeline.guidance import GuidanceScales
from mtv_core.pipeline.keyframes import load_start_image
from mtv_core.checkpoints import save_mtv_model, save_vae
from mtv_core.testing import save_tiny_wav2vec2


def _write_wav(path, samples: np.ndarray, rate: int):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((samples[None] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, t5_folder):
    folder = tmp_path_factory.mktemp("job")
    save_mtv_model(make_tiny_model(), folder / "mtv.safetensors")
    save_vae(make_tiny_vae(), folder / "vae.safetensors")
    save_tiny_wav2vec2(folder / "wav2vec")
    rate, seconds = 16000, 2.5
    t = np.arange(int(rate * seconds)) / rate
    speech = 0.4 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    clicks = np.zeros_like(t)
    clicks[(np.arange(5) * 0.5 * rate).astype(int)] = 0.9
    music = 0.2 * np.sin(2 * np.pi * 440 * t)
    paths = {name: _write_wav(folder / f"{name}.wav", signal.astype(np.float32), rate)
             for name, signal in (("speech", speech), ("effects", clicks), ("music", music))}
    paths["mix"] = _write_wav(folder / "mix.wav", ((speech + clicks + music) / 2).astype(np.float32), rate)
    return {"folder": folder, "model": folder / "mtv.safetensors", "vae": folder / "vae.safetensors", "t5": t5_folder,
            "wav2vec": folder / "wav2vec", **paths}


def _args(files, out, *extra):
    return ["generate", "--audio", str(files["mix"]), "--prompt", "one man is speaking . a red car", "--out", str(out),
            "--model", str(files["model"]), "--vae", str(files["vae"]), "--t5", str(files["t5"]),
            "--wav2vec", str(files["wav2vec"]), "--speech", str(files["speech"]), "--effects", str(files["effects"]),
            "--music", str(files["music"]), "--steps", "2", "--device", "cpu", *extra]


def _probe(path):
    frames, samples = 0, 0
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames += 1
                else:
                    samples += frame.samples
    return frames, samples / rate


def test_generate_from_audio_files_to_an_mp4_of_the_audio_length(files, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(_args(files, out)) == 0
    frames, audio_seconds = _probe(out)
    assert frames == round(2.5 * 24) == 60  # two segments, cut to the audio length
    assert abs(audio_seconds - 60 / 24) <= 1024 / 16000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # segments removed once the mp4 exists
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out)
    # one moving line: the steps of both segments, each segment's decoder slices after its steps
    lines = printed.err.split("\r")
    for segment, last_step in ((1, "step 2/4"), (2, "step 4/4\n")):
        decoded = lines.index(f"decoding segment {segment}/2: slice 6/6\n")
        assert lines[decoded - 7] == last_step and lines[decoded - 6] == f"decoding segment {segment}/2: slice 0/6"


def test_some_model_files_explains_what_is_missing(tmp_path, capsys):
    assert main(["generate", "--audio", "a.wav", "--prompt", "x", "--model", "m.safetensors", "--out", str(tmp_path / "o.mp4")]) == 1
    error = capsys.readouterr().err
    assert "missing model files: --vae --t5 --wav2vec" in error and "or none of them to use the built-in demo model" in error


def _validate(args):
    validate_job(build_job(build_parser().parse_args(args)))


def test_bad_values_fail_before_any_computation(files, tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(ConfigError, match="steps 0 is out of range"):
        _validate(_args(files, out, "--steps", "0"))
    with pytest.raises(ConfigError, match="speech guidance scale -2.0 is out of range"):
        _validate(_args(files, out, "--speech-guidance", "-2"))
    with pytest.raises(GenerationError, match="does not exist; create it"):
        _validate(_args(files, tmp_path / "no" / "o.mp4"))
    with pytest.raises(ConfigError, match="audio to mux 'drums'"):
        _validate(_args(files, out, "--mux", "drums"))
    with pytest.raises(ConfigError, match="--speech-gate-dbfs 6.0 is out of range; use a number in -200..0; or 'off'"):
        _validate(_args(files, out, "--speech-gate-dbfs", "6"))
    with pytest.raises(ConfigError, match="speech_in_pauses guidance scale 40.0 is out of range"):
        _validate(_args(files, out, "--speech-in-pauses", "40"))


def test_streams_that_do_not_fit_the_model_are_refused_naming_the_flags(files, tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(ConfigError, match="single-speaker model; pass the multi model with --model, or leave out --speech2"):
        _validate(_args(files, out, "--speaker-ranges", "0-1:1, 1-2.5:2"))
    save_mtv_model(make_tiny_model("tiny-multi"), tmp_path / "multi.safetensors")
    args = _args(files, out)
    args[args.index("--model") + 1] = str(tmp_path / "multi.safetensors")
    with pytest.raises(ConfigError, match=r"\['speech2'\] were not given; pass --speech2 FILE .* or --speaker-ranges"):
        _validate(args)


def test_guidance_defaults_official_for_given_models_and_the_demo_scales_for_the_demo(files, tmp_path):
    from mtv_core import demo
    from mtv_core.spec import OFFICIAL_GUIDANCE

    def scales(*argv):
        return vars(build_job(build_parser().parse_args(argv)).config.guidance)

    out = str(tmp_path / "o.mp4")
    assert scales(*_args(files, out)) == {**dict.fromkeys(("text", "speech", "effects", "music"), OFFICIAL_GUIDANCE),
                                          "silent": None, "until": None, "speech_in_pauses": None, "speech_pause_keep": None}
    assert scales(*_args(files, out, "--guidance", "5", "--effects-guidance", "7", "--silent-guidance", "1",
                         "--guidance-until", "0.8", "--speech-in-pauses", "2")) == {
        "text": 5.0, "speech": 5.0, "effects": 7.0, "music": 5.0, "silent": 1.0,
        "until": dict.fromkeys(("text", "speech", "effects", "music"), 0.8), "speech_in_pauses": 2.0, "speech_pause_keep": None}
    assert scales("generate", "--example", "--out", out) == {**demo.GUIDANCE, "until": None, "speech_in_pauses": None, "speech_pause_keep": None}
    assert demo.GUIDANCE["speech"] != OFFICIAL_GUIDANCE and demo.GUIDANCE["silent"] != OFFICIAL_GUIDANCE
    assert scales("generate", "--example", "--out", out, "--guidance-until", "speech=0.5, music=0") == {
        **demo.GUIDANCE, "until": {"speech": 0.5, "music": 0.0}, "speech_in_pauses": None, "speech_pause_keep": None}
    with pytest.raises(ConfigError, match="guidance until 'speech:0.5' is not understood"):
        scales("generate", "--example", "--out", out, "--guidance-until", "speech:0.5")
    assert scales("generate", "--example", "--out", out, "--speech-guidance", "2") == {
        **demo.GUIDANCE, "speech": 2.0, "until": None, "speech_in_pauses": None, "speech_pause_keep": None}
    assert scales("generate", "--example", "--out", out, "--guidance", "3.5") == vars(GuidanceScales.joint(3.5))


def test_missing_and_mismatched_model_files_are_named(files, tmp_path):
    out = tmp_path / "o.mp4"
    args = _args(files, out)
    args[args.index("--model") + 1] = str(tmp_path / "absent.safetensors")
    with pytest.raises(ModelFileError, match="absent.safetensors' does not exist; pass the converted MTV"):
        _validate(args)
    from diffusers import AutoencoderKLCogVideoX
    AutoencoderKLCogVideoX(block_out_channels=(8,), down_block_types=("CogVideoXDownBlock3D",),
                           up_block_types=("CogVideoXUpBlock3D",), latent_channels=8,
                           norm_num_groups=4).save_pretrained(tmp_path / "vae8")
    with pytest.raises(ConfigError, match="makes 8-channel latents but the model takes 16"):
        _validate(_args(files, out, "--vae", str(tmp_path / "vae8")))


def test_overlapping_prompt_schedule_is_refused(files, tmp_path):
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b", "start": 1, "transition": 2},
                                    {"prompt": "c", "start": 2}]))
    args = _args(files, tmp_path / "o.mp4")
    args[args.index("--prompt"):args.index("--prompt") + 2] = ["--prompt-schedule", str(schedule)]
    with pytest.raises(ConfigError, match="transition ends at 3s, after entry 2 starts"):
        build_job(build_parser().parse_args(args))


def test_start_image_of_another_size_is_resized_and_centre_cropped(tmp_path):
    from PIL import Image
    pixels = np.zeros((50, 200, 3), dtype=np.uint8)
    pixels[:, 75:125] = 255  # a white band in the middle survives the crop
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = load_start_image(tmp_path / "wide.png", 48, 32)
    assert image.shape == (3, 1, 32, 48)
    assert image[:, 0, 16, 24].min() > 0.9 and image[:, 0, 16, 0].max() < -0.9
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_start_image(tmp_path / "bad.png", 48, 32)


def test_speech_guidance_in_pauses_changes_the_frames_where_nobody_speaks(files, tmp_path):
    """Speech for the first second only: a pause scale other than the speech scale changes the video (through attention,
    every frame; which latent frames get it is tested in test_guidance.py); at the speech scale it is the plain render.
    The work folder's features carry the speech level per frame."""
    from mtv_core.audio import AudioFeatures
    from mtv_core.spec import OFFICIAL_GUIDANCE

    rate = 16000
    t = np.arange(int(rate * 2.5)) / rate
    speech = _write_wav(tmp_path / "speech.wav", (0.4 * np.sin(2 * np.pi * 220 * t) * (t < 1.0)).astype(np.float32), rate)

    def render(name, *extra):
        args = _args(files, tmp_path / f"{name}.mp4", "--work-dir", str(tmp_path / "work"), "--keep-segments", *extra)
        args[args.index("--speech") + 1] = str(speech)
        assert main(args) == 0
        return _decoded(tmp_path / f"{name}.mp4")

    plain, same, paused = render("plain"), render("same", "--speech-in-pauses", str(OFFICIAL_GUIDANCE)), \
        render("paused", "--speech-in-pauses", "1")
    assert np.array_equal(plain, same)
    assert np.abs(plain.astype(float) - paused.astype(float)).mean() > 1.0
    levels = AudioFeatures.load(next((tmp_path / "work").glob("features-*.safetensors"))).levels["speech"]
    # a 0.4 sine: -10.97 dBFS; frame 24 starts at 1.0 s
    assert (levels[:23] + 10.97).abs().max() < 0.1 and levels[25:60].max() < -100


def _decoded(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_generate_with_the_demixer_and_a_chosen_stem_in_the_mp4(files, tmp_path):
    pytest.importorskip("demucs")
    from mtv_core.testing import save_tiny_demixer

    demixer = save_tiny_demixer(tmp_path / "demixer.safetensors")
    args = _args(files, tmp_path / "out.mp4", "--demixer", str(demixer), "--mux", "speech,music", "--seed", "7")
    for stem in ("--speech", "--effects", "--music"):
        del args[args.index(stem):args.index(stem) + 2]
    assert main(args) == 0
    frames, audio_seconds = _probe(tmp_path / "out.mp4")
    assert frames == 60 and abs(audio_seconds - 60 / 24) <= 1024 / 44100


def test_the_speech_gate_is_chosen_per_job_and_stems_demixed_at_another_level_are_made_again(files, tmp_path):
    """A work folder's stems are reused only at the gate level they were made with; stems from before the gate
    existed (no level in their report: as separated) are made again for the gated default."""
    pytest.importorskip("demucs")
    from mtv_core.testing import save_tiny_demixer

    demixer = save_tiny_demixer(tmp_path / "demixer.safetensors")
    args = _args(files, tmp_path / "out.mp4", "--demixer", str(demixer), "--keep-segments", "--work-dir", str(tmp_path / "work"))
    for stem in ("--speech", "--effects", "--music"):
        del args[args.index(stem):args.index(stem) + 2]

    def stems_after(*extra):
        assert main([*args, *extra]) == 0
        folder = next((tmp_path / "work").glob("stems-*"))
        report = json.loads((folder / "report.json").read_text())
        return report, (folder / "speech.wav").stat().st_mtime_ns

    separated, made = stems_after("--speech-gate-dbfs", "off")
    assert separated["speech_gate_dbfs"] is None and separated["stems"]["speech"]["peak_dbfs"] > -45
    assert stems_after("--speech-gate-dbfs", "off")[1] == made  # reused
    gated, remade = stems_after()
    assert gated["speech_gate_dbfs"] == -45.0 and remade != made
    folder = next((tmp_path / "work").glob("stems-*"))
    del separated["speech_gate_dbfs"]  # as a run from before the gate wrote it
    (folder / "report.json").write_text(json.dumps(separated))
    assert stems_after()[0]["speech_gate_dbfs"] == -45.0


def test_a_second_speaker_file_is_added_on_top_of_the_demixers_stems(files, tmp_path):
    """`--demixer X --speech2 FILE`: the demixer still gives speech, effects and music; the file adds Person2."""
    pytest.importorskip("demucs")
    from mtv_core.audio import AudioFeatures
    from mtv_core.testing import save_tiny_demixer

    save_mtv_model(make_tiny_model("tiny-multi"), tmp_path / "multi.safetensors")
    demixer = save_tiny_demixer(tmp_path / "demixer.safetensors")
    args = _args(files, tmp_path / "out.mp4", "--demixer", str(demixer), "--keep-segments", "--work-dir", str(tmp_path / "work"))
    for stem in ("--speech", "--effects", "--music"):
        del args[args.index(stem):args.index(stem) + 2]
    args[args.index("--model") + 1] = str(tmp_path / "multi.safetensors")
    assert main([*args, "--speech2", str(files["speech"])]) == 0
    features = AudioFeatures.load(next((tmp_path / "work").glob("features-*.safetensors")))
    stems = next((tmp_path / "work").glob("stems-*"))
    assert sorted(p.name for p in stems.glob("*.wav")) == ["effects.wav", "music.wav", "speech.wav"]
    assert set(features.per_stream) == {"speech", "speech2", "effects", "music"}
    assert not any("not given" in why for why in features.flags.values()), features.flags
    assert main([*args, "--speaker-ranges", "0-1:1, 1-2.5:2", "--out", str(tmp_path / "ranges.mp4")]) == 0


def _video(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_generate_with_a_lora_changes_the_video_and_strength_zero_does_not(files, tmp_path):
    from mtv_core.checkpoints import load_mtv_model
    from mtv_core.testing import save_random_lora

    adapter = save_random_lora(load_mtv_model(files["model"]), tmp_path / "style.safetensors", std=0.5)
    videos = {}
    for name, extra in (("plain", ()), ("zero", ("--lora", f"{adapter}:0")), ("full", ("--lora", str(adapter)))):
        assert main(_args(files, tmp_path / f"{name}.mp4", "--seed", "4", *extra)) == 0
        videos[name] = _video(tmp_path / f"{name}.mp4")
    assert np.array_equal(videos["zero"], videos["plain"])
    assert np.abs(videos["full"].astype(int) - videos["plain"]).mean() > 1.0


def test_a_lora_for_another_model_is_refused_before_any_model_loads(files, tmp_path):
    from mtv_core.testing import save_random_lora

    other = save_random_lora(make_tiny_model(seed=9), tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="trained on another base model"):
        _validate(_args(files, tmp_path / "o.mp4", "--lora", f"{other}:0.8"))
    with pytest.raises(ModelFileError, match="LoRA strength 9.0 .* is out of range"):
        _validate(_args(files, tmp_path / "o.mp4", "--lora", f"{other}:9"))


def test_fbc_on_a_one_block_model_is_refused_before_loading(files, tmp_path):
    one_block = tmp_path / "one-block.safetensors"
    save_mtv_model(testing.tiny_mtv_model(num_layers=1, sample_height=4, sample_width=6), one_block)
    args = _args({**files, "model": one_block}, tmp_path / "o.mp4", "--cache", "fbc")
    with pytest.raises(ConfigError, match="first-block cache needs at least 2 transformer blocks .* this model has 1"):
        _validate(args)
    _validate(_args(files, tmp_path / "o.mp4", "--cache", "fbc"))  # the 2-block model takes it
