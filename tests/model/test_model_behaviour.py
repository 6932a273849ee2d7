"""Behaviour of the MTV transformer: backbone parity, per-frame grouping, clean-frame modulation."""

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from mtv_core import testing
from mtv_core.checkpoints import load_mtv_model, save_safetensors
from mtv_core.models import MTVTransformer3DModel, backbone_config, mtv_config
from mtv_core.models.transformer_mtv import AudioContext, FrameConditioning


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = MTVTransformer3DModel(**mtv_config("tiny-single")).eval()
    for block in m.transformer_blocks:  # trained-like, non-zero music pathway
        torch.nn.init.normal_(block.music_adaln.weight, std=0.05)
    return m


def inputs(config, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 13, 16, config.sample_height, config.sample_width, generator=g)
    text = torch.randn(batch, 226, config.text_embed_dim, generator=g)
    features = {s: torch.randn(batch, 49, config.audio_feature_dim, generator=g) for s in ("speech", "speech2", "effects", "music")}
    return latents, text, torch.tensor([700, 700]), features


def plain_backbone(model):
    plain = CogVideoXTransformer3DModel(**backbone_config(dict(model.config))).eval()
    missing, _ = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    return plain


def plain_forward(plain, model, latents, text, t):
    grid = (model.config.sample_height // 2, model.config.sample_width // 2)
    rope = get_3d_rotary_pos_embed(model.config.attention_head_dim, ((0, 0), grid), grid, latents.shape[1])
    padded = torch.cat([latents, torch.zeros_like(latents)], dim=2)
    return plain(padded, text, t, image_rotary_emb=rope).sample


def test_no_audio_is_exactly_the_cogvideox_backbone(model):
    latents, text, t, _ = inputs(model.config)
    with torch.no_grad():
        ours = model(latents, text, t)
        theirs = plain_forward(plain_backbone(model), model, latents, text, t)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_silent_audio_pathway_gives_the_backbone_output():
    """Audio present, but every cross-attention output projection and music modulation zero."""
    torch.manual_seed(0)
    model = MTVTransformer3DModel(**mtv_config("tiny-single")).eval()
    for block in model.transformer_blocks:
        for attn in block.audio_attn.values():
            torch.nn.init.zeros_(attn.to_out[0].weight)
            torch.nn.init.zeros_(attn.to_out[0].bias)
    latents, text, t, features = inputs(model.config)
    with torch.no_grad():
        tokens = model.project_audio(features)
        assert tokens["speech"].abs().sum() > 0
        torch.testing.assert_close(model(latents, text, t, audio_tokens=tokens), model(latents, text, t), atol=0, rtol=0)


def test_audio_changes_the_output(model):
    latents, text, t, features = inputs(model.config)
    with torch.no_grad():
        with_audio = model(latents, text, t, audio_tokens=model.project_audio(features))
        without = model(latents, text, t)
    assert (with_audio - without).abs().max() > 1e-3


def test_audio_of_latent_frame_k_changes_only_frame_k_at_injection(model):
    config, T, B = model.config, 13, 2
    S = (config.sample_height // 2) * (config.sample_width // 2)
    g = torch.Generator().manual_seed(2)
    h = torch.randn(B, T * S, 32, generator=g)
    streams = {name: torch.randn(B * T, 4, 32, generator=g) for name in model.interval_streams}
    music = torch.randn(B, 32, generator=g)
    k = 5
    changed = {name: value.clone() for name, value in streams.items()}
    changed["speech"].view(B, T, 4, 32)[:, k] += 3.0
    changed["effects"].view(B, T, 4, 32)[:, k] -= 2.0
    rope = model._rotary_embedding(T, config.sample_height, config.sample_width, "cpu")
    block = model.transformer_blocks[0]
    with torch.no_grad():
        base = block.inject_audio(h, AudioContext(streams, music), rope, T).view(B, T, S, 32)
        moved = block.inject_audio(h, AudioContext(changed, music), rope, T).view(B, T, S, 32)
    delta = (moved - base).abs().amax(dim=(0, 2, 3))
    assert delta[k] > 1e-3
    assert torch.all(delta[torch.arange(T) != k] == 0)


def test_interaction_blocks_keep_latent_frames_apart(model):
    """Through projection and interaction, frame k's features reach only frame k's tokens."""
    _, _, _, features = inputs(model.config)
    changed = {name: value.clone() for name, value in features.items()}
    changed["speech"][:, 20] += 1.0  # video frame 20 -> latent frame 5 (frames 17..20)
    temb = torch.randn(2, model.config.time_embed_dim)
    with torch.no_grad():
        base = model.audio_context(model.project_audio(features), temb, 13).streams
        moved = model.audio_context(model.project_audio(changed), temb, 13).streams
    for name in ("speech", "effects"):
        delta = (moved[name] - base[name]).view(2, 13, -1).abs().amax(dim=(0, 2))
        assert delta[5] > 0 and torch.all(delta[torch.arange(13) != 5] == 0)


def test_clean_frames_use_timestep_zero_modulation(model):
    block, D = model.transformer_blocks[0], 32
    temb, temb0 = torch.randn(2, model.config.time_embed_dim), torch.randn(2, model.config.time_embed_dim)
    video, text = torch.randn(2, 13 * 24, D), torch.randn(2, 226, D)
    mask = torch.zeros(2, 13, dtype=torch.bool)
    mask[:, :2] = True
    with torch.no_grad():
        mixed = block.norm1(video, text, FrameConditioning(temb, temb0, mask, 13))
        noisy = block.norm1(video, text, FrameConditioning(temb, None, None, 13))
        clean = block.norm1(video, text, FrameConditioning(temb0, None, None, 13))
    mixed_video = mixed[0].view(2, 13, 24, D)
    torch.testing.assert_close(mixed_video[:, :2], clean[0].view(2, 13, 24, D)[:, :2])
    torch.testing.assert_close(mixed_video[:, 2:], noisy[0].view(2, 13, 24, D)[:, 2:])
    torch.testing.assert_close(mixed[1], noisy[1])  # text always uses the real timestep


def test_clean_mask_changes_only_what_it_should(model):
    latents, text, t, features = inputs(model.config)
    tokens = model.project_audio(features)
    none_clean = torch.zeros(2, 13, dtype=torch.bool)
    prefix = none_clean.clone()
    prefix[:, :2] = True
    with torch.no_grad():
        plain = model(latents, text, t, audio_tokens=tokens)
        torch.testing.assert_close(model(latents, text, t, audio_tokens=tokens, clean_mask=none_clean), plain)
        assert (model(latents, text, t, audio_tokens=tokens, clean_mask=prefix) - plain).abs().max() > 1e-4


def test_official_sizes_have_the_published_parameter_counts():
    with torch.device("meta"):
        single = MTVTransformer3DModel(**mtv_config("official-5b-single"))
        multi = MTVTransformer3DModel(**mtv_config("official-5b-multi"))
    def audio_params(m):
        return sum(p.numel() for n, p in m.named_parameters() if "audio" in n or "music" in n or "speaker" in n)
    # The official MTV modules add 5.962 B (single/accm) and 6.954 B (multi) parameters to CogVideoX-5B.
    assert round(audio_params(single) / 1e9, 3) == 5.962
    assert round(audio_params(multi) / 1e9, 3) == 6.954
    assert 11.4e9 < sum(p.numel() for p in single.parameters()) < 11.7e9


def test_shared_injection_ablation_has_one_cross_attention():
    model = MTVTransformer3DModel(**mtv_config("tiny-single", shared_injection=True)).eval()
    assert list(model.transformer_blocks[0].audio_attn) == ["shared"]
    latents, text, t, features = inputs(model.config)
    with torch.no_grad():
        out = model(latents, text, t, audio_tokens=model.project_audio(features))
    assert torch.isfinite(out).all()


def test_missing_stream_is_a_clear_error(model):
    from mtv_core.errors import ConfigError

    with pytest.raises(ConfigError, match="effects"):
        model.project_audio({"speech": torch.zeros(1, 49, model.config.audio_feature_dim)})


def written_out_layer_norm(x, norm, eps):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + eps)
    return normed if norm.weight is None else normed * norm.weight + norm.bias


def test_the_final_layer_norms_use_the_official_eps():
    """The converter maps SAT `transformer.final_layernorm` (eps 1e-5) to norm_final and
    `mixins.final_layer.norm_final` (eps 1e-6) to norm_out.norm: each computes (x - mean) / sqrt(var + eps) * w + b
    with its own official eps."""
    model = testing.tiny_mtv_model()
    with torch.no_grad():
        for norm in (model.norm_final, model.norm_out.norm):  # weights away from 1 / 0, so a swap would show
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.1, 0.1)
    x = torch.randn(2, 7, model.norm_final.normalized_shape[0]) * 1e-3  # small activations, where eps matters
    for norm, eps, other in ((model.norm_final, 1e-5, 1e-6), (model.norm_out.norm, 1e-6, 1e-5)):
        with torch.no_grad():
            ours = norm(x)
        torch.testing.assert_close(ours, written_out_layer_norm(x, norm, eps), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(ours, written_out_layer_norm(x, norm, other), atol=1e-3)


def test_a_file_with_the_old_swapped_final_eps_loads_with_the_official_ones(tmp_path):
    """Files written before the fix carry `final_norm_eps: 1e-6` (norm_final's old, swapped default): it is dropped."""
    model = testing.tiny_mtv_model()
    path = save_safetensors(tmp_path / "old.safetensors", model.state_dict(), {**dict(model.config), "final_norm_eps": 1e-6})
    loaded = load_mtv_model(path)
    assert loaded.norm_final.eps == 1e-5 and loaded.norm_out.norm.eps == 1e-6
    assert "final_norm_eps" not in loaded.config


def test_the_official_first_row_interaction_timestep_is_an_option():
    """Row 0's timestep for every sample, as the official interaction blocks do; the same when all rows share t."""
    model = testing.tiny_mtv_model()
    generator = torch.Generator().manual_seed(0)
    features = {name: torch.randn(2, 49, model.config.audio_feature_dim, generator=generator) for name in model.audio_streams}
    tokens = model.project_audio(features)
    mixed, shared = torch.tensor([10.0, 900.0]), torch.tensor([10.0, 10.0])
    temb = lambda t: model._embed_timestep(t, torch.float32)
    per_sample = model.audio_context(tokens, temb(mixed), 13).streams
    model.first_row_interaction_timestep = True
    first_row = model.audio_context(tokens, temb(mixed), 13).streams
    row0_everywhere = model.audio_context(tokens, temb(shared), 13).streams
    model.first_row_interaction_timestep = False
    for name in per_sample:
        assert torch.equal(first_row[name], row0_everywhere[name])
        assert not torch.allclose(first_row[name][13:], per_sample[name][13:])  # sample 1 follows row 0's t
        assert torch.equal(first_row[name][:13], per_sample[name][:13])
