"""Named model configurations: the official MTV sizes and tiny ones for tests and the demo."""

from __future__ import annotations

import copy

from ..errors import ConfigError

# CogVideoX-5B-I2V (v1.0) backbone, as in the official configs/cogvideox_5b.yaml.
_OFFICIAL_BACKBONE = dict(
    num_attention_heads=48,
    attention_head_dim=64,
    in_channels=32,
    out_channels=16,
    time_embed_dim=512,
    text_embed_dim=4096,
    num_layers=42,
    sample_width=90,
    sample_height=60,
    sample_frames=49,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
    use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=True,
)
# The audio modules of the released checkpoints: wav2vec2-base features (5-frame window x 12 layers
# x 768) projected to 32 tokens of width 768 per latent frame.
_OFFICIAL_AUDIO = dict(
    audio_feature_dim=5 * 12 * 768,
    audio_dim=768,
    audio_tokens_per_frame=32,
    audio_intermediate_dim=512,
    audio_interaction_layers=4,
    audio_interaction_head_dim=16,
)
# Small enough to run a step in well under a second on a CPU core; wav2vec2 width 32.
_TINY_BACKBONE = {**_OFFICIAL_BACKBONE, "num_attention_heads": 2, "attention_head_dim": 16, "time_embed_dim": 32,
                  "text_embed_dim": 32, "num_layers": 2, "sample_width": 12, "sample_height": 8}
_TINY_AUDIO = {**_OFFICIAL_AUDIO, "audio_feature_dim": 5 * 12 * 32, "audio_dim": 32, "audio_tokens_per_frame": 4,
               "audio_intermediate_dim": 32, "audio_interaction_layers": 2}

# The built-in demo model (trained on the synthetic world): small enough to train and run on a laptop CPU.
_DEMO = {**_TINY_BACKBONE, **_TINY_AUDIO, "num_attention_heads": 4, "attention_head_dim": 32, "num_layers": 4,
         "time_embed_dim": 64, "audio_dim": 64, "audio_tokens_per_frame": 8, "audio_intermediate_dim": 128}

MODEL_CONFIGS: dict[str, dict] = {
    "official-5b-single": {**_OFFICIAL_BACKBONE, **_OFFICIAL_AUDIO, "variant": "single"},
    "official-5b-accm": {**_OFFICIAL_BACKBONE, **_OFFICIAL_AUDIO, "variant": "accm"},
    "official-5b-multi": {**_OFFICIAL_BACKBONE, **_OFFICIAL_AUDIO, "variant": "multi", "multi_speaker": True},
    "tiny-single": {**_TINY_BACKBONE, **_TINY_AUDIO, "variant": "single"},
    "tiny-accm": {**_TINY_BACKBONE, **_TINY_AUDIO, "variant": "accm"},
    "tiny-multi": {**_TINY_BACKBONE, **_TINY_AUDIO, "variant": "multi", "multi_speaker": True},
    "demo-single": {**_DEMO, "variant": "single"},
}
# Short names users type: "single" means the official single-speaker model.
ALIASES = {"single": "official-5b-single", "accm": "official-5b-accm", "multi": "official-5b-multi"}


def mtv_config(name: str, **overrides) -> dict:
    """Keyword arguments for `MTVTransformer3DModel` for a named configuration, with overrides."""
    key = ALIASES.get(name, name)
    if key not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model config {name!r}; choose one of {', '.join(sorted(MODEL_CONFIGS))}")
    return {**copy.deepcopy(MODEL_CONFIGS[key]), **overrides}


def backbone_config(config: dict) -> dict:
    """The part of an MTV config that a plain diffusers `CogVideoXTransformer3DModel` takes."""
    return {key: config[key] for key in _OFFICIAL_BACKBONE if key in config}
