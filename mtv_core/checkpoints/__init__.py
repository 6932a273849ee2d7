"""Every model file MTV reads or writes, in one place: one module per kind (transformer, VAE, T5 text encoder,
wav2vec2, demixer, LoRA) with its loader and saver, the conversion of the official checkpoints, and the checks they
share (`folders`: bounded configs, meta-device builds, the checked Hugging Face-style folder). Every header is read
through `mtv_core.tensorfile`; nothing is unpickled beyond tensors and plain containers.

Heavy packages (transformers, demucs) load when their loader is first used."""

from .convert import ConversionReport, convert_checkpoint
from .demixer import DemixerFile, convert_demixer, load_demixer, read_demixer_file, save_demixer, write_demixer_file
from .files import read_config, save_safetensors
from .lora import LORA_KIND, adapter_settings, file_identity, load_lora, parse_lora_argument, save_lora
from .text_encoder import load_text_encoder
from .transformer import MTV_KIND, load_mtv_model, save_mtv_model
from .vae import VAE_KIND, convert_vae_folder, load_vae, save_vae
from .wav2vec import load_wav2vec2

__all__ = [
    "ConversionReport", "DemixerFile", "LORA_KIND", "MTV_KIND", "VAE_KIND", "adapter_settings", "convert_checkpoint",
    "convert_demixer", "convert_vae_folder", "file_identity", "load_demixer", "load_lora", "load_mtv_model",
    "load_text_encoder", "load_vae", "load_wav2vec2", "parse_lora_argument", "read_config", "read_demixer_file",
    "save_demixer", "save_lora", "save_mtv_model", "save_safetensors", "save_vae", "write_demixer_file",
]
