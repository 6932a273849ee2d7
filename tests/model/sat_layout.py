"""A synthetic checkpoint in the official SAT / DeepSpeed layout, written from the key table of
the official SAT code (suimuc/MTV_Framework, independently of the converter), with tiny dimensions and random values."""

import torch

PREFIX = "model.diffusion_model."


def sat_state_dict(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    D = config["num_attention_heads"] * config["attention_head_dim"]
    hd, E, Da = config["attention_head_dim"], config["time_embed_dim"], config["audio_dim"]
    p, n = config["patch_size"], config["audio_tokens_per_frame"]
    frames = (config["sample_frames"] - 1) // 4 + 1
    patches = frames * (config["sample_height"] // p) * (config["sample_width"] // p)
    sd = {}

    def put(name, *shape, scale=0.1):
        sd[PREFIX + name] = torch.randn(*shape, generator=g) * scale

    def linear(name, out_dim, in_dim):
        put(f"{name}.weight", out_dim, in_dim)
        put(f"{name}.bias", out_dim)

    def norm(name, dim):
        sd[PREFIX + f"{name}.weight"] = 1 + torch.randn(dim, generator=g) * 0.1
        put(f"{name}.bias", dim)

    for i in range(config["num_layers"]):
        layer = f"transformer.layers.{i}"
        norm(f"{layer}.input_layernorm", D)
        linear(f"{layer}.attention.query_key_value", 3 * D, D)
        linear(f"{layer}.attention.dense", D, D)
        norm(f"{layer}.post_attention_layernorm", D)
        linear(f"{layer}.mlp.dense_h_to_4h", 4 * D, D)
        linear(f"{layer}.mlp.dense_4h_to_h", D, 4 * D)
        linear(f"mixins.adaln_layer.adaLN_modulations.{i}.1", 12 * D, E)
        norm(f"mixins.adaln_layer.query_layernorm_list.{i}", hd)
        norm(f"mixins.adaln_layer.key_layernorm_list.{i}", hd)
        suffixes = ["", "_effect"] + (["_second"] if config.get("multi_speaker") else [])
        for suffix in suffixes:
            norm(f"{layer}.audio_input_layernorm{suffix}", D)
            linear(f"{layer}.audio_attn{suffix}.query", D, D)
            linear(f"{layer}.audio_attn{suffix}.key_value", 2 * D, Da)
            linear(f"{layer}.audio_attn{suffix}.dense", D, D)
        linear(f"{layer}.audio_music_adaLn", 2 * D, Da)  # zero-init when trained; random here to test it
    norm("transformer.final_layernorm", D)
    linear("time_embed.0", E, D)
    linear("time_embed.2", E, E)
    put("mixins.patch_embed.proj.weight", D, config["in_channels"], p, p)
    put("mixins.patch_embed.proj.bias", D)
    linear("mixins.patch_embed.text_proj", D, config["text_embed_dim"])
    put("mixins.pos_embed.pos_embedding", 1, config["max_text_seq_length"] + patches, D)
    put("mixins.pos_embed.freqs_sin", patches, hd)
    put("mixins.pos_embed.freqs_cos", patches, hd)
    norm("mixins.final_layer.norm_final", D)
    linear("mixins.final_layer.linear", p * p * config["out_channels"], D)
    linear("mixins.final_layer.adaLN_modulation.1", 2 * D, E)
    for proj in ("audio_proj", "audio_proj_effect", "audio_proj_music"):
        linear(f"transformer.{proj}.proj1", config["audio_intermediate_dim"], config["audio_feature_dim"])
        linear(f"transformer.{proj}.proj2", config["audio_intermediate_dim"], config["audio_intermediate_dim"])
        linear(f"transformer.{proj}.proj3", n * Da, config["audio_intermediate_dim"])
        put(f"transformer.{proj}.conv1.weight", n * Da, n * Da, 2, scale=0.02)
        put(f"transformer.{proj}.conv1.bias", n * Da)
        norm(f"transformer.{proj}.norm", Da)
    if config.get("multi_speaker"):
        put("transformer.audio_vocal_embedding", Da)
        put("transformer.audio_vocal_embedding_1", Da)
    for j in range(config["audio_interaction_layers"]):
        block = f"transformer.audio_combine.dual_blocks.{j}"
        for name in ("vocal_layernorm", "accm_layernorm", "post_attention_layernorm"):
            norm(f"{block}.{name}", Da)
        linear(f"{block}.adaLN_modulations.1", 12 * Da, E)
        linear(f"{block}.attention.query_key_value", 3 * Da, Da)
        linear(f"{block}.attention.dense", Da, Da)
        linear(f"{block}.mlp.dense_h_to_4h", 4 * Da, Da)
        linear(f"{block}.mlp.dense_4h_to_h", Da, 4 * Da)
    # What a SAT/DeepSpeed save also keeps, outside the DiT.
    sd["first_stage_model.decoder.conv_in.weight"] = torch.zeros(1)
    sd["conditioner.embedders.0.transformer.shared.weight"] = torch.zeros(1)
    return sd


def write_sat_checkpoint(path, config: dict, seed: int = 0) -> dict:
    sd = sat_state_dict(config, seed)
    torch.save({"module": sd, "iteration": 100, "dp_world_size": 8, "ds_version": "0.14.0"}, path)
    return sd
