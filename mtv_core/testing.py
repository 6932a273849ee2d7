"""Tiny random components built from the standard classes (MTV transformer, CogVideoX VAE, T5, wav2vec2,
HTDemucs), written with the ordinary savers (`mtv_core.checkpoints`) as the same kinds of files users point the
loaders at. For tests, examples and benchmarks; the demo model is trained from these sizes."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_WORDS = ("<pad> </s> <unk> one two no person conversation persons person1 person2 is speaking scene "
              "description a an the man woman girl boy drum ball red blue green yellow . , : talks sits in on at of "
              "and with room street stage park table").split()


def tiny_mtv_model(config: str = "tiny-single", seed: int = 0, music_std: float = 0.05, **overrides):
    """A random MTV transformer; the zero-initialised music modulation gets small weights so music matters."""
    from .models import MTVTransformer3DModel, mtv_config

    torch.manual_seed(seed)
    model = MTVTransformer3DModel(**mtv_config(config, **overrides)).eval()
    for block in model.transformer_blocks:
        torch.nn.init.normal_(block.music_adaln.weight, std=music_std)
    return model


def save_random_lora(model, path, rank: int = 4, seed: int = 0, std: float = 0.2,
                     targets: str = r"transformer_blocks\.\d+\.attn1\.(to_q|to_v)") -> Path:
    """An adapter file for `model` with random A and B (a trained one has non-zero B) on the Linears matching
    `targets`."""
    import re

    from .checkpoints.lora import save_lora
    from .lora import model_identity

    generator = torch.Generator().manual_seed(seed)
    pairs = {name: (torch.randn(rank, module.in_features, generator=generator) * std,
                    torch.randn(module.out_features, rank, generator=generator) * std)
             for name, module in model.named_modules() if re.fullmatch(targets, name)}
    return save_lora(path, pairs, rank, rank, targets, model_identity(model))


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=16, layers_per_block=1,
                                  norm_num_groups=4, scaling_factor=0.7).eval()


def save_tiny_t5(folder, d_model: int = 32, seed: int = 0, words=TINY_WORDS) -> Path:
    """A 1-layer random T5 encoder and a word-level tokenizer, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = Path(folder)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(words), d_model=d_model, d_ff=2 * d_model, d_kv=8, num_heads=4, num_layers=1,
                      feed_forward_proj="gated-gelu")
    T5EncoderModel(config).save_pretrained(folder)
    return folder


def save_tiny_wav2vec2(folder, hidden_size: int = 32, seed: int = 0) -> Path:
    """A random wav2vec2 with the real 12 layers and 320x conv downsampling, tiny widths."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = Path(folder)
    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=hidden_size, num_hidden_layers=12, intermediate_size=37, num_attention_heads=2,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


def save_tiny_demixer(path, layout: str = "cinematic", seed: int = 0) -> Path:
    """A random HTDemucs (channels 8, depth 4) in the MVSEP-CDX23 cinematic or the 4-stem music layout."""
    from fractions import Fraction

    from demucs.htdemucs import HTDemucs

    from .checkpoints import save_demixer

    sources = ["music", "effect", "dialog"] if layout == "cinematic" else ["drums", "bass", "other", "vocals"]
    torch.manual_seed(seed)
    return save_demixer(HTDemucs(sources=sources, channels=8, depth=4, segment=Fraction(4), t_layers=1), path)
