"""Checkpoint conversion (official SAT -> safetensors) and loading."""

from .convert import ConversionReport, convert_checkpoint
from .files import read_config, save_safetensors
from .loading import load_mtv_model

__all__ = ["convert_checkpoint", "ConversionReport", "load_mtv_model", "save_safetensors", "read_config"]
