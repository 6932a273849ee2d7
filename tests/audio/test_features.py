import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from audio_signals import clicks, tiny_wav2vec2_config, tone

from mtv_core.audio import AudioFeatures, Stems, encode_stems, frame_count, padded_frame_count
from mtv_core.audio.levels import FLOOR_DBFS
from mtv_core.audio.wav2vec import encode_waveform, normalize_waveform, pad_for_clips
from mtv_core.checkpoints import load_wav2vec2
from mtv_core.cli import main
from mtv_core.errors import ConfigError, ModelFileError
from mtv_core.tensorfile import write_tensor_file

FPS = 24


def test_frame_counts_and_padding_follow_the_official_rules():
    assert frame_count(16000 * 2, FPS) == 48 and frame_count(16000 * 2 + 1, FPS) == 49
    assert [padded_frame_count(n) for n in (1, 2, 48, 49, 50, 97, 98)] == [1, 49, 49, 49, 97, 97, 145]
    waveform, padded = pad_for_clips(torch.ones(32000), 48, FPS)
    assert padded == 49 and waveform.shape == (32000 + 666,) and waveform[32000:].abs().sum() == 0


def test_normalisation_matches_numpy():
    samples = np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.3 + 0.1
    expected = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    assert np.allclose(normalize_waveform(torch.from_numpy(samples)).numpy(), expected, atol=1e-5)


def test_hooked_forward_equals_manual_interpolate_then_encoder(tiny_encoder):
    samples = torch.from_numpy(tone(220, 1.3, 16000)[0] + clicks([0.5], 1.3, 16000)[0])
    features, num_frames = encode_waveform(tiny_encoder, samples, FPS)
    assert num_frames == math.ceil(1.3 * FPS) and features.shape == (padded_frame_count(num_frames), 12, 32)
    model = tiny_encoder.model
    waveform, padded = pad_for_clips(normalize_waveform(samples), num_frames, FPS)
    with torch.no_grad():
        conv = model.feature_extractor(waveform[None])
        conv = F.interpolate(conv, size=padded, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = model.feature_projection(conv)
        hidden = model.encoder.layer_norm(hidden + model.encoder.pos_conv_embed(hidden))
        layers = []
        for layer in model.encoder.layers:
            output = layer(hidden)
            hidden = output[0] if isinstance(output, tuple) else output
            layers.append(hidden)
        expected = torch.stack(layers, dim=2)[0]
    assert torch.allclose(features, expected, atol=1e-5)


@pytest.mark.parametrize("click_time", [0.3, 1.0, 1.77])
def test_click_lands_in_its_frame(tiny_encoder, click_time):
    samples = torch.from_numpy(clicks([click_time], 2.5, 16000)[0])
    conv = tiny_encoder.conv_features(normalize_waveform(samples), frame_count(len(samples), FPS))
    response = (conv - conv[0]).abs().sum(dim=1)
    assert abs(int(response.argmax()) - round(click_time * FPS)) <= 1


def test_window_matches_an_independent_loop():
    generator = torch.Generator().manual_seed(0)
    per_stream = {"speech": torch.randn(49, 3, 4, generator=generator), "music": torch.randn(49, 3, 4, generator=generator)}
    features = AudioFeatures(per_stream, num_frames=40, fps=FPS)
    for start, length in ((0, 49), (44, 49), (47, 5)):
        window = features.window(start, length)["speech"]
        assert window.shape == (length, 5, 3, 4)
        for row, frame in enumerate(range(start, start + length)):
            for offset in range(5):
                source = min(max(frame + offset - 2, 0), 48)
                expected = per_stream["speech"][source] if frame < 49 else torch.zeros(3, 4)
                assert torch.equal(window[row, offset], expected)
    flat = features.flat_window(44, 49)["music"]
    assert flat.shape == (49, 60) and torch.equal(flat[1].view(5, 3, 4), features.window(45, 1)["music"][0])
    with pytest.raises(ConfigError):
        features.window(-1, 3)


def _stems(seconds=1.5, rate=16000):
    speech = torch.from_numpy(tone(180, seconds, rate, amplitude=0.3))
    music = torch.from_numpy(tone(440, seconds, rate, amplitude=0.2))
    bleed = speech * 1e-4  # -84 dBFS: demix residue, counts as silent
    return Stems({"speech": speech, "effects": bleed, "music": music}, rate, source_id="abc")


def test_encode_stems_uses_silence_for_quiet_and_absent_tracks(tiny_encoder, tmp_path):
    stems = _stems()
    features = encode_stems(stems, tiny_encoder, fps=FPS)
    silence, _ = encode_waveform(tiny_encoder, torch.zeros(24000), FPS)
    assert features.num_frames == 36 and features.num_padded_frames == 49 and features.source_id == "abc"
    assert torch.allclose(features.per_stream["effects"], silence) and "effects" in features.flags
    assert features.per_stream["effects"].abs().sum() > 0, "silence features are not the zero (unconditional) features"
    kept = encode_stems(stems, tiny_encoder, fps=FPS, encode_silent_as_silence=False)
    assert not torch.allclose(kept.per_stream["effects"], silence)
    path = tmp_path / "f.safetensors"
    features.save(path)
    loaded = AudioFeatures.load(path)
    assert loaded.num_frames == 36 and loaded.fps == FPS and loaded.flags == features.flags
    assert all(torch.equal(loaded.per_stream[k], features.per_stream[k]) for k in features.per_stream)


def test_features_keep_each_streams_level_per_frame_and_files_from_before_still_load(tiny_encoder, tmp_path):
    stems = _stems()  # 1.5 s: 36 frames, padded to 49; speech a 0.3 sine (-13.47 dBFS), effects 84 dB below it
    features = encode_stems(stems, tiny_encoder, fps=FPS)
    speech = features.levels["speech"]
    assert speech.shape == (49,) and set(features.levels) == {"speech", "effects", "music"}
    assert torch.allclose(speech[:36], torch.full((36,), -13.468), atol=0.02) and (speech[36:] == FLOOR_DBFS).all()
    assert torch.allclose(features.levels["effects"][:36], speech[:36] - 80.0, atol=0.02)
    window = features.speech_levels(30, 49)
    assert torch.equal(window[:6], speech[30:36]) and (window[6:] == FLOOR_DBFS).all()

    path = tmp_path / "f.safetensors"
    features.save(path)
    loaded = AudioFeatures.load(path)
    assert set(loaded.per_stream) == set(features.per_stream)
    assert all(torch.equal(loaded.levels[k], features.levels[k]) for k in features.levels)
    older = replace(features, levels={})  # a file written before the levels were kept
    older.save(path)
    assert AudioFeatures.load(path).levels == {} and AudioFeatures.load(path).speech_levels(0, 49) is None


@pytest.mark.parametrize("name, level, problem", [("level.speech", torch.zeros(49, 2), "levels float32 \\(frames,\\)"),
                                                   ("level.speech", torch.zeros(48), "all of one length"),
                                                   ("level.voice", torch.zeros(49), "unknown streams \\['voice'\\]")])
def test_a_features_file_with_bad_levels_is_refused(tmp_path, name, level, problem):
    metadata = {"format": "mtv-audio-features", "num_frames": "40", "fps": "24.0", "flags": "{}"}
    path = write_tensor_file(tmp_path / "f.safetensors", {"speech": torch.zeros(49, 3, 4), name: level}, metadata)
    with pytest.raises(ModelFileError, match=problem):
        AudioFeatures.load(path)


def test_the_louder_speaker_decides_the_speech_level():
    levels = {"speech": torch.tensor([-10.0, -60.0, -200.0]), "speech2": torch.tensor([-70.0, -20.0, -200.0])}
    features = AudioFeatures({"speech": torch.zeros(3, 1, 1)}, 3, FPS, levels=levels)
    assert features.speech_levels(0, 4).tolist() == [-10.0, -20.0, -200.0, FLOOR_DBFS]


def test_feature_cache_hits_on_same_content(tiny_encoder, tmp_path, monkeypatch):
    stems = _stems(seconds=1.0)
    first = encode_stems(stems, tiny_encoder, fps=FPS, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("w2v-*.safetensors"))) == 3
    monkeypatch.setattr(type(tiny_encoder), "encode", lambda *args: pytest.fail("cache missed"))
    second = encode_stems(stems, tiny_encoder, fps=FPS, cache_dir=tmp_path)
    assert all(torch.equal(first.per_stream[k], second.per_stream[k]) for k in first.per_stream)


def test_long_audio_is_encoded_in_bounded_passes(tiny_encoder):
    samples = torch.from_numpy(tone(300, 6.0, 16000)[0])
    whole, frames = encode_waveform(tiny_encoder, samples, FPS, max_pass_seconds=None)
    passes, _ = encode_waveform(tiny_encoder, samples, FPS, max_pass_seconds=2.0, context_seconds=1.0)
    assert passes.shape == whole.shape and frames == 144


def test_safetensors_wav2vec_with_metadata_and_inferred_config(tmp_path, tiny_wav2vec2_dir):
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Model

    samples = torch.from_numpy(tone(200, 1.0, 16000)[0])
    reference = load_wav2vec2(tiny_wav2vec2_dir)
    state = {f"wav2vec2.{k}": v for k, v in reference.model.state_dict().items()}
    with_config = tmp_path / "w.safetensors"
    save_file(state, with_config, metadata={"config": reference.model.config.to_json_string()})
    expected, _ = encode_waveform(reference, samples, FPS)
    assert torch.allclose(encode_waveform(load_wav2vec2(with_config), samples, FPS)[0], expected, atol=1e-6)
    torch.manual_seed(1)
    base_like = Wav2Vec2Model(tiny_wav2vec2_config(hidden_size=64, num_attention_heads=1, num_conv_pos_embedding_groups=4)).eval()
    inferred = tmp_path / "inferred.safetensors"
    save_file(dict(base_like.state_dict()), inferred)
    loaded = load_wav2vec2(inferred)
    assert loaded.model.config.num_attention_heads == 1 and loaded.num_layers == 12
    assert torch.allclose(encode_waveform(loaded, samples, FPS)[0], encode_waveform(type(reference)(base_like), samples, FPS)[0], atol=1e-6)
    odd = tmp_path / "odd.safetensors"
    save_file({k: v for k, v in state.items() if "projection" not in k}, odd)
    with pytest.raises(ModelFileError, match="cannot be inferred"):
        load_wav2vec2(odd)


def test_features_cli_on_stems_folder_and_with_demixer(tmp_path, write, tiny_wav2vec2_dir, cinematic_th):
    folder = tmp_path / "clip"
    folder.mkdir()
    write("clip/clip_dialog.wav", tone(180, 1.2, 16000, amplitude=0.3), 16000)
    write("clip/clip_music.flac", tone(440, 1.2, 44100, amplitude=0.2, channels=2), 44100)
    write("clip/clip_effect.mp3", tone(900, 1.2, 44100, amplitude=0.2, channels=2), 44100)
    out = tmp_path / "features.safetensors"
    assert main(["features", str(folder), "--wav2vec", str(tiny_wav2vec2_dir), "--fps", "24", "--out", str(out), "--speaker-ranges", "0-0.6:1, 0.6-1.2:2"]) == 0
    features = AudioFeatures.load(out)
    assert set(features.per_stream) == {"speech", "speech2", "effects", "music"} and features.num_frames == 29
    assert features.per_stream["speech"].shape == (49, 12, 32)
    mixed = write("mix.m4a", tone(300, 1.0, 44100, amplitude=0.3, channels=2), 44100)
    out2 = tmp_path / "demixed.safetensors"
    assert main(["features", str(mixed), "--wav2vec", str(tiny_wav2vec2_dir), "--demixer", str(cinematic_th), "--out", str(out2)]) == 0
    assert AudioFeatures.load(out2).num_frames == 24
    assert main(["features", str(mixed), "--wav2vec", str(tiny_wav2vec2_dir), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert not (tmp_path / "x.safetensors").exists()


def test_passes_of_digital_silence_are_computed_once_and_equal_a_plain_pass_loop(tiny_encoder):
    """An absent stream is wav2vec(silence) over the whole length: identical passes are encoded once."""
    from mtv_core.audio.wav2vec import padded_frame_count

    calls = []
    encode = tiny_encoder.encode
    tiny_encoder.encode = lambda piece, frames: calls.append(frames) or encode(piece, frames)
    try:
        rows, frames = encode_waveform(tiny_encoder, torch.zeros(16000 * 9), FPS, max_pass_seconds=2.0, context_seconds=0.5)
    finally:
        tiny_encoder.encode = encode
    padded = padded_frame_count(frames)
    expected, context, per_frame = [], 12, (16000 * 9 + (padded - frames) * 666) / padded
    for first in range(0, padded, 48):  # the pass loop written out: every pass computed
        last, begin = min(first + 48, padded), max(0, first - context)
        end = min(padded, last + context)
        piece = torch.zeros(round(end * per_frame) - round(begin * per_frame))
        expected.append(encode(piece, end - begin)[first - begin:last - begin])
    assert torch.equal(rows, torch.cat(expected))
    assert len(calls) < len(expected) - 1  # the interior passes, all alike, ran once
