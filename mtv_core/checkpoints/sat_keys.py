"""Key maps from the official SAT / DeepSpeed checkpoints to this project's (diffusers-style) names.

MTV keys (every key containing "audio") are mapped by their own table before the backbone table,
because the backbone renames ("attention" -> "attn1", "dense" -> "to_out.0", ...) would corrupt them.
Each rule is (regex on the SAT key, output name template, how the tensor is split).
"""

from __future__ import annotations

import re

import torch

from ..errors import ModelFileError
from ..spec import EFFECTS, MUSIC, SPEECH, SPEECH2

MTV_PREFIX = "model.diffusion_model."
_STREAM = {"": SPEECH, "_second": SPEECH2, "_effect": EFFECTS}
_ENCODER = {"audio_proj": SPEECH, "audio_proj_effect": EFFECTS, "audio_proj_music": MUSIC}

# (pattern, target, split) — split: None (rename), "qkv" (3 row chunks), "kv" (2 row chunks),
# "adaln" (the SAT 12-chunk AdaLN order), "speaker0"/"speaker1" (rows of one stacked parameter).
_BACKBONE_RULES = [
    (r"transformer\.layers\.(\d+)\.input_layernorm\.(\w+)", r"transformer_blocks.\1.norm1.norm.\2", None),
    (r"transformer\.layers\.(\d+)\.attention\.query_key_value\.(\w+)", r"transformer_blocks.\1.attn1.{}.\2", "qkv"),
    (r"transformer\.layers\.(\d+)\.attention\.dense\.(\w+)", r"transformer_blocks.\1.attn1.to_out.0.\2", None),
    (r"transformer\.layers\.(\d+)\.post_attention_layernorm\.(\w+)", r"transformer_blocks.\1.norm2.norm.\2", None),
    (r"transformer\.layers\.(\d+)\.mlp\.dense_h_to_4h\.(\w+)", r"transformer_blocks.\1.ff.net.0.proj.\2", None),
    (r"transformer\.layers\.(\d+)\.mlp\.dense_4h_to_h\.(\w+)", r"transformer_blocks.\1.ff.net.2.\2", None),
    (r"mixins\.adaln_layer\.adaLN_modulations\.(\d+)\.1\.(\w+)", r"transformer_blocks.\1.{}.linear.\2", "adaln"),
    (r"mixins\.adaln_layer\.query_layernorm_list\.(\d+)\.(\w+)", r"transformer_blocks.\1.attn1.norm_q.\2", None),
    (r"mixins\.adaln_layer\.key_layernorm_list\.(\d+)\.(\w+)", r"transformer_blocks.\1.attn1.norm_k.\2", None),
    (r"transformer\.final_layernorm\.(\w+)", r"norm_final.\1", None),
    (r"time_embed\.0\.(\w+)", r"time_embedding.linear_1.\1", None),
    (r"time_embed\.2\.(\w+)", r"time_embedding.linear_2.\1", None),
    (r"mixins\.patch_embed\.proj\.(\w+)", r"patch_embed.proj.\1", None),
    (r"mixins\.patch_embed\.text_proj\.(\w+)", r"patch_embed.text_proj.\1", None),
    (r"mixins\.pos_embed\.pos_embedding", r"patch_embed.pos_embedding", None),
    (r"mixins\.final_layer\.norm_final\.(\w+)", r"norm_out.norm.\1", None),
    (r"mixins\.final_layer\.linear\.(\w+)", r"proj_out.\1", None),
    (r"mixins\.final_layer\.adaLN_modulation\.1\.(\w+)", r"norm_out.linear.\1", None),
]
_MTV_RULES = [
    (r"transformer\.layers\.(\d+)\.audio_input_layernorm(|_second|_effect)\.(\w+)", "transformer_blocks.{0}.audio_norm.{stream1}.{2}", None),
    (r"transformer\.layers\.(\d+)\.audio_attn(|_second|_effect)\.query\.(\w+)", "transformer_blocks.{0}.audio_attn.{stream1}.to_q.{2}", None),
    (r"transformer\.layers\.(\d+)\.audio_attn(|_second|_effect)\.key_value\.(\w+)", "transformer_blocks.{0}.audio_attn.{stream1}.{{}}.{2}", "kv"),
    (r"transformer\.layers\.(\d+)\.audio_attn(|_second|_effect)\.dense\.(\w+)", "transformer_blocks.{0}.audio_attn.{stream1}.to_out.0.{2}", None),
    (r"transformer\.layers\.(\d+)\.audio_music_adaLn\.(\w+)", "transformer_blocks.{0}.music_adaln.{1}", None),
    (r"transformer\.(audio_proj(?:_effect|_music)?)\.proj(\d)\.(\w+)", "audio_encoders.{encoder0}.proj{1}.{2}", None),
    (r"transformer\.(audio_proj(?:_effect|_music)?)\.conv1\.(\w+)", "audio_encoders.{encoder0}.temporal_conv.{1}", None),
    (r"transformer\.(audio_proj(?:_effect|_music)?)\.norm\.(\w+)", "audio_encoders.{encoder0}.norm_out.{1}", None),
    (r"transformer\.audio_vocal_embedding", "speaker_embeddings", "speaker0"),
    (r"transformer\.audio_vocal_embedding_1", "speaker_embeddings", "speaker1"),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.vocal_layernorm\.(\w+)", "audio_interaction_blocks.{0}.norm_speech.{1}", None),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.accm_layernorm\.(\w+)", "audio_interaction_blocks.{0}.norm_effects.{1}", None),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.post_attention_layernorm\.(\w+)", "audio_interaction_blocks.{0}.norm_ff.{1}", None),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.adaLN_modulations\.1\.(\w+)", "audio_interaction_blocks.{0}.adaln.1.{1}", None),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.attention\.query_key_value\.(\w+)", "audio_interaction_blocks.{0}.attn.{{}}.{1}", "qkv"),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.attention\.dense\.(\w+)", "audio_interaction_blocks.{0}.attn.to_out.0.{1}", None),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.mlp\.dense_h_to_4h\.(\w+)", "audio_interaction_blocks.{0}.ff.net.0.proj.{1}", None),
    (r"transformer\.audio_combine\.dual_blocks\.(\d+)\.mlp\.dense_4h_to_h\.(\w+)", "audio_interaction_blocks.{0}.ff.net.2.{1}", None),
]
# Present in SAT files, not needed: RoPE tables (recomputed), unused absolute position / token tables.
_DROPPED = re.compile(r"mixins\.pos_embed\.freqs_(sin|cos)|transformer\.position_embeddings\.|embed_tokens")


def strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DiT's own tensors: SAT saves also keep `first_stage_model.*` / `conditioner.*`."""
    return {key[len(MTV_PREFIX):]: value for key, value in state_dict.items() if key.startswith(MTV_PREFIX)}


def conversion_units(sat: dict) -> list[list[str]]:
    """SAT keys in groups that convert on their own: one key each, except the two speaker embeddings, which stack
    into one tensor. A streaming converter reads one group at a time."""
    speakers = [key for key in sat if re.fullmatch(r"transformer\.audio_vocal_embedding(_1)?", key)]
    return [[key] for key in sat if key not in speakers] + ([speakers] if speakers else [])


def convert_mtv_state_dict(sat: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """SAT DiT tensors (prefix stripped) -> (our tensors, dropped SAT keys, unrecognised SAT keys)."""
    converted: dict[str, torch.Tensor] = {}
    speakers: dict[int, torch.Tensor] = {}
    dropped, unknown = [], []
    for key, tensor in sat.items():
        if _DROPPED.search(key):
            dropped.append(key)
            continue
        rules = _MTV_RULES if "audio" in key else _BACKBONE_RULES
        rule = next(((p, t, s) for p, t, s in rules if re.fullmatch(p, key)), None)
        if rule is None:
            unknown.append(key)
            continue
        pattern, template, split = rule
        groups = re.fullmatch(pattern, key).groups()
        if split in ("speaker0", "speaker1"):
            speakers[int(split[-1])] = tensor
            continue
        name = _fill(template, groups, rules is _MTV_RULES)
        converted.update(_split(name, tensor, split))
    if speakers:
        converted["speaker_embeddings"] = torch.stack([speakers[i] for i in sorted(speakers)])
    return converted, dropped, unknown


def _fill(template: str, groups: tuple, mtv: bool) -> str:
    if not mtv:
        return re.sub(r"\\(\d)", lambda m: groups[int(m.group(1)) - 1], template)
    extra = {}
    if "{stream1}" in template:
        extra["stream1"] = _STREAM[groups[1]]
    if "{encoder0}" in template:
        extra["encoder0"] = _ENCODER[groups[0]]
    return template.format(*groups, **extra)


def _split(name: str, tensor: torch.Tensor, split: str | None) -> dict[str, torch.Tensor]:
    if split is None:
        return {name: tensor}
    if split == "qkv":
        return {name.format(part): chunk for part, chunk in zip(("to_q", "to_k", "to_v"), tensor.chunk(3, dim=0))}
    if split == "kv":
        return {name.format(part): chunk for part, chunk in zip(("to_k", "to_v"), tensor.chunk(2, dim=0))}
    if split == "adaln":
        # SAT order: shift/scale/gate for video MSA, video MLP, text MSA, text MLP. diffusers' norm1
        # takes video MSA + text MSA, norm2 video MLP + text MLP.
        chunks = tensor.chunk(12, dim=0)
        return {
            name.format("norm1"): torch.cat(chunks[0:3] + chunks[6:9]),
            name.format("norm2"): torch.cat(chunks[3:6] + chunks[9:12]),
        }
    raise ValueError(split)


def infer_mtv_config(sat: dict[str, torch.Tensor], text_length: int = 226, latent_frames: int = 13, latent_size=None) -> dict:
    """Model dimensions from the SAT tensors' names and shapes (works for fine-tunes and test files)."""
    def shape(key):
        if key not in sat:
            raise ModelFileError(f"the checkpoint has no tensor {MTV_PREFIX}{key}; it is not an MTV/CogVideoX SAT checkpoint")
        return tuple(sat[key].shape)

    layers = 1 + max((int(m.group(1)) for k in sat if (m := re.fullmatch(r"transformer\.layers\.(\d+)\.input_layernorm\.weight", k))), default=-1)
    if layers == 0:
        raise ModelFileError(f"the checkpoint has no {MTV_PREFIX}transformer.layers.*; it is not an MTV SAT checkpoint")
    dim = shape("transformer.layers.0.input_layernorm.weight")[0]
    head_dim = shape("mixins.adaln_layer.query_layernorm_list.0.weight")[0]
    _, in_channels, patch, _ = shape("mixins.patch_embed.proj.weight")
    audio_dim = shape("transformer.audio_proj.norm.weight")[0]
    intermediate, feature_dim = shape("transformer.audio_proj.proj1.weight")
    config = dict(
        num_attention_heads=dim // head_dim,
        attention_head_dim=head_dim,
        in_channels=in_channels,
        out_channels=shape("mixins.final_layer.linear.weight")[0] // (patch * patch),
        time_embed_dim=shape("time_embed.0.weight")[0],
        text_embed_dim=shape("mixins.patch_embed.text_proj.weight")[1],
        num_layers=layers,
        patch_size=patch,
        sample_frames=(latent_frames - 1) * 4 + 1,
        max_text_seq_length=text_length,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings="mixins.pos_embed.pos_embedding" in sat,
        audio_feature_dim=feature_dim,
        audio_dim=audio_dim,
        audio_tokens_per_frame=shape("transformer.audio_proj.proj3.weight")[0] // audio_dim,
        audio_intermediate_dim=intermediate,
        audio_interaction_layers=len({k.split(".")[3] for k in sat if k.startswith("transformer.audio_combine.dual_blocks.")}),
        multi_speaker=any("audio_attn_second" in k for k in sat),
    )
    config["variant"] = "multi" if config["multi_speaker"] else "single"
    height, width = latent_size or _latent_size(sat, text_length, latent_frames, patch)
    config.update(sample_height=height, sample_width=width)
    return config


def _latent_size(sat, text_length, latent_frames, patch) -> tuple[int, int]:
    """The learned position table covers text + latent_frames x rows x cols patches; the official
    models are 2:3 (480x720), so solve rows x cols for that aspect."""
    if "mixins.pos_embed.pos_embedding" not in sat:
        return 60, 90
    video_tokens = sat["mixins.pos_embed.pos_embedding"].shape[1] - text_length
    per_frame = video_tokens // latent_frames
    rows = round((per_frame * 2 / 3) ** 0.5)
    cols = rows * 3 // 2
    if rows * cols * latent_frames != video_tokens:
        raise ModelFileError(
            f"cannot tell the latent size from a position table of {video_tokens} video tokens; "
            "give the latent size (height and width in latent pixels, e.g. 60 90 for 480x720 video)"
        )
    return rows * patch, cols * patch


# -- VAE (SAT 3d-vae.pt -> diffusers AutoencoderKLCogVideoX) ------------------------------------
_VAE_RULES = [
    (r"(encoder|decoder)\.mid\.block_(\d)\.", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}."),
    (r"encoder\.down\.(\d+)\.", lambda m: f"encoder.down_blocks.{m[1]}."),
    (r"decoder\.up\.(\d+)\.", lambda m: f"decoder.up_blocks.{{up{m[1]}}}."),
    (r"\.block\.(\d+)\.", lambda m: f".resnets.{m[1]}."),
    (r"\.downsample\.", lambda m: ".downsamplers.0."),
    (r"\.upsample\.", lambda m: ".upsamplers.0."),
    (r"\.nin_shortcut\.", lambda m: ".conv_shortcut."),
]


def convert_vae_state_dict(sat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SAT's up blocks are numbered from the lowest resolution; diffusers' from the highest."""
    ups = [int(m.group(1)) for k in sat if (m := re.match(r"decoder\.up\.(\d+)\.", k))]
    num_up = 1 + max(ups, default=-1)
    converted = {}
    for key, tensor in sat.items():
        if key.startswith("loss."):
            continue
        name = key
        for pattern, replace in _VAE_RULES:
            name = re.sub(pattern, replace, name)
        name = re.sub(r"\{up(\d+)\}", lambda m: str(num_up - 1 - int(m.group(1))), name)
        converted[name] = tensor
    return converted
