"""The converted official-layout checkpoint computes what the SAT tensors define."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mtv_core.checkpoints import load_mtv_model
from mtv_core.models.transformer_mtv import AudioContext

PREFIX = "model.diffusion_model."


def test_cli_converts_with_no_missing_or_unexpected_keys(sat_single, tmp_path):
    source, _, _ = sat_single
    out = tmp_path / "converted.safetensors"
    result = subprocess.run([sys.executable, "-m", "mtv_core", "convert", "--input", str(source), "--output", str(out)],
                            capture_output=True, text=True, check=True)
    assert "missing: none" in result.stdout and "unexpected: none" in result.stdout
    assert "variant single" in result.stdout and out.is_file()
    assert not list(tmp_path.glob(".*tmp"))


def test_cli_help():
    result = subprocess.run([sys.executable, "-m", "mtv_core", "convert", "--help"], capture_output=True, text=True, check=True)
    assert "--input" in result.stdout and "--output" in result.stdout


def test_config_is_inferred_from_shapes(sat_single, sat_multi):
    single = load_mtv_model(sat_single[2])
    multi = load_mtv_model(sat_multi[2])
    assert single.config.num_layers == 2 and single.config.audio_dim == 32 and not single.config.multi_speaker
    assert (single.config.sample_height, single.config.sample_width) == (8, 12)
    assert multi.config.multi_speaker and multi.config.variant == "multi"
    assert multi.audio_streams == ("speech", "speech2", "effects", "music")


def sat_rope_t0(rows: int, cols: int, head_dim: int):
    """SAT's Rotary3DPositionEmbeddingMixin table for the first latent frame (t = 0)."""
    def axis(n, dim):
        freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        return torch.outer(torch.arange(n, dtype=torch.float32), freqs).repeat_interleave(2, dim=-1)

    dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3
    t = axis(1, dim_t)[0].expand(rows, cols, dim_t)
    h = axis(rows, dim_hw)[:, None].expand(rows, cols, dim_hw)
    w = axis(cols, dim_hw)[None].expand(rows, cols, dim_hw)
    freqs = torch.cat([t, h, w], dim=-1).reshape(rows * cols, head_dim)
    return freqs.cos(), freqs.sin()


def sat_rotate(x, cos, sin):
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return x * cos + rotated * sin


def sat_audio_step(sd, layer, h, streams, music_tokens, config):
    """The official per-layer AUDIO step written from the SAT tensors (suimuc/MTV_Framework, dit_video_concat.py, AdaLNMixin.layer_forward)."""
    def w(name):
        return sd[f"{PREFIX}transformer.layers.{layer}.{name}"]

    heads, hd = config.num_attention_heads, config.attention_head_dim
    D, T = heads * hd, config.sample_frames // 4 + 1
    B, S = h.shape[0], h.shape[1] // T
    q_norm = (sd[f"{PREFIX}mixins.adaln_layer.query_layernorm_list.{layer}.weight"], sd[f"{PREFIX}mixins.adaln_layer.query_layernorm_list.{layer}.bias"])
    k_norm = (sd[f"{PREFIX}mixins.adaln_layer.key_layernorm_list.{layer}.weight"], sd[f"{PREFIX}mixins.adaln_layer.key_layernorm_list.{layer}.bias"])
    cos, sin = sat_rope_t0(config.sample_height // 2, config.sample_width // 2, hd)
    total = h
    for suffix, tokens in streams.items():
        x = F.layer_norm(h, (D,), w(f"audio_input_layernorm{suffix}.weight"), w(f"audio_input_layernorm{suffix}.bias"))
        x = x.reshape(B * T, S, D)
        q = F.linear(x, w(f"audio_attn{suffix}.query.weight"), w(f"audio_attn{suffix}.query.bias"))
        kv = F.linear(tokens, w(f"audio_attn{suffix}.key_value.weight"), w(f"audio_attn{suffix}.key_value.bias"))
        k, v = kv[..., :D], kv[..., D:]
        q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, hd).transpose(1, 2) for t in (q, k, v))
        q = F.layer_norm(q, (hd,), *q_norm, eps=1e-6)
        k = F.layer_norm(k, (hd,), *k_norm, eps=1e-6)
        q = sat_rotate(q, cos, sin)
        scores = (q @ k.transpose(-1, -2) / hd ** 0.5).softmax(-1)
        out = (scores @ v).transpose(1, 2).reshape(B, T * S, D)
        total = total + F.linear(out, w(f"audio_attn{suffix}.dense.weight"), w(f"audio_attn{suffix}.dense.bias"))
    pooled = music_tokens.reshape(B, -1, music_tokens.shape[-1]).mean(1)
    scale, shift = F.linear(pooled, w("audio_music_adaLn.weight"), w("audio_music_adaLn.bias"))[:, None].chunk(2, dim=-1)
    return total * (1 + scale) + shift


@pytest.mark.parametrize("fixture", ["sat_single", "sat_multi"])
def test_block_audio_step_matches_sat_formula(fixture, request):
    _, sd, converted = request.getfixturevalue(fixture)
    model = load_mtv_model(converted)
    config = model.config
    g = torch.Generator().manual_seed(3)
    B, T, S = 2, 13, (config.sample_height // 2) * (config.sample_width // 2)
    h = torch.randn(B, T * S, 32, generator=g)
    tokens = {name: torch.randn(B * T, 4, 32, generator=g) for name in model.interval_streams}
    music = torch.randn(B * T, 4, 32, generator=g)
    context = AudioContext(tokens, music.reshape(B, -1, 32).mean(1))
    rope = model._rotary_embedding(T, config.sample_height, config.sample_width, "cpu")
    with torch.no_grad():
        ours = model.transformer_blocks[1].inject_audio(h, context, rope, T)
    sat_streams = {"": tokens["speech"], "_effect": tokens["effects"]}
    if config.multi_speaker:
        sat_streams["_second"] = tokens["speech2"]
    expected = sat_audio_step(sd, 1, h, sat_streams, music, config)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


def test_adaln_chunks_follow_sat_order(sat_single):
    _, sd, converted = sat_single
    model = load_mtv_model(converted)
    emb = torch.randn(3, model.config.time_embed_dim)
    sat = F.linear(F.silu(emb), sd[f"{PREFIX}mixins.adaln_layer.adaLN_modulations.0.1.weight"],
                   sd[f"{PREFIX}mixins.adaln_layer.adaLN_modulations.0.1.bias"]).chunk(12, dim=1)
    block = model.transformer_blocks[0]
    with torch.no_grad():
        norm1 = block.norm1.linear(F.silu(emb)).chunk(6, dim=1)
        norm2 = block.norm2.linear(F.silu(emb)).chunk(6, dim=1)
    # diffusers order: shift, scale, gate (video), then shift, scale, gate (text)
    for ours, sat_index in zip(norm1 + norm2, [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]):
        torch.testing.assert_close(ours, sat[sat_index])


def sat_dual_block(sd, j, vocal, vocal2, accm, emb):
    """The official Audio_Dual_Block written from its SAT tensors (suimuc/MTV_Framework, dit_video_concat.py)."""
    def w(name):
        return sd[f"{PREFIX}transformer.audio_combine.dual_blocks.{j}.{name}"]

    def ln(x, name):
        return F.layer_norm(x, (x.shape[-1],), w(f"{name}.weight"), w(f"{name}.bias"))

    c = F.linear(F.silu(emb), w("adaLN_modulations.1.weight"), w("adaLN_modulations.1.bias")).chunk(12, dim=1)
    c = [x[:, None] for x in c]
    tracks = [(vocal, "vocal_layernorm", c[:6])] + ([(vocal2, "vocal_layernorm", c[:6])] if vocal2 is not None else []) + [(accm, "accm_layernorm", c[6:])]
    attn_in = torch.cat([ln(x, n) * (1 + m[1]) + m[0] for x, n, m in tracks], dim=1)
    qkv = F.linear(attn_in, w("attention.query_key_value.weight"), w("attention.query_key_value.bias"))
    q, k, v = (t.unflatten(-1, (-1, 16)).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    attn = ((q @ k.transpose(-1, -2) / 4.0).softmax(-1) @ v).transpose(1, 2).flatten(2)
    attn = F.linear(attn, w("attention.dense.weight"), w("attention.dense.bias")).chunk(len(tracks), dim=1)
    tracks = [(x + m[2] * a, n, m) for (x, n, m), a in zip(tracks, attn)]
    mlp_in = torch.cat([ln(x, "post_attention_layernorm") * (1 + m[4]) + m[3] for x, _, m in tracks], dim=1)
    hidden = F.gelu(F.linear(mlp_in, w("mlp.dense_h_to_4h.weight"), w("mlp.dense_h_to_4h.bias")), approximate="tanh")
    mlp = F.linear(hidden, w("mlp.dense_4h_to_h.weight"), w("mlp.dense_4h_to_h.bias")).chunk(len(tracks), dim=1)
    return [x + m[5] * o for (x, _, m), o in zip(tracks, mlp)]


def test_interaction_block_matches_sat_formula(sat_multi):
    _, sd, converted = sat_multi
    model = load_mtv_model(converted)
    g = torch.Generator().manual_seed(5)
    vocal, vocal2, accm = (torch.randn(6, 4, 32, generator=g) for _ in range(3))
    emb = torch.randn(1, model.config.time_embed_dim, generator=g).expand(6, -1)
    with torch.no_grad():
        ours = model.audio_interaction_blocks[1]({"speech": vocal, "speech2": vocal2, "effects": accm}, emb)
    expected = sat_dual_block(sd, 1, vocal, vocal2, accm, emb)
    for name, value in zip(("speech", "speech2", "effects"), expected):
        torch.testing.assert_close(ours[name], value, atol=1e-5, rtol=1e-4)


def test_audio_projection_matches_sat_formula(sat_single):
    _, sd, converted = sat_single
    model = load_mtv_model(converted)
    features = torch.randn(2, 49, model.config.audio_feature_dim)

    def w(name):
        return sd[f"{PREFIX}transformer.audio_proj_music.{name}"]

    x = torch.relu(F.linear(features, w("proj1.weight"), w("proj1.bias")))
    x = torch.relu(F.linear(x, w("proj2.weight"), w("proj2.bias")))
    x = F.linear(x, w("proj3.weight"), w("proj3.bias"))  # (B, 49, 4*32)
    for _ in range(2):  # keep the first frame, convolve pairs of the rest
        rest = F.conv1d(x[:, 1:].transpose(1, 2), w("conv1.weight"), w("conv1.bias"), stride=2).transpose(1, 2)
        x = torch.cat([x[:, :1], rest], dim=1)
    expected = F.layer_norm(x.unflatten(-1, (4, 32)), (32,), w("norm.weight"), w("norm.bias"))
    with torch.no_grad():
        ours = model.project_audio({"speech": features, "effects": features, "music": features})["music"]
    assert ours.shape == (2, 13, 4, 32)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
