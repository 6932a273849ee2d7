"""One-time conversion of the official SAT checkpoints (MTV DiT, 3D VAE) to safetensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from ..errors import ModelFileError
from ..models import MTVTransformer3DModel
from .files import load_pickled_state_dict, save_safetensors, unwrap_state_dict
from .loading import MTV_KIND
from .sat_keys import MTV_PREFIX, convert_mtv_state_dict, convert_vae_state_dict, infer_mtv_config, strip_prefix

VAE_KIND = "cogvideox-vae"


@dataclass
class ConversionReport:
    kind: str
    config: dict
    converted: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def lines(self) -> list[str]:
        lines = [f"{self.kind}: {self.converted} tensors written"]
        if self.kind == MTV_KIND:
            c = self.config
            lines.append(
                f"variant {c['variant']}: {c['num_layers']} layers, width {c['num_attention_heads'] * c['attention_head_dim']}, "
                f"audio width {c['audio_dim']}, latent {c['sample_height']}x{c['sample_width']}"
            )
        lines.append(f"dropped (not needed): {len(self.dropped)}")
        lines += [f"missing: {key}" for key in self.missing] or ["missing: none"]
        lines += [f"unexpected: {key}" for key in self.unexpected] or ["unexpected: none"]
        return lines


def detect_kind(state: dict) -> str:
    if any(key.startswith(MTV_PREFIX) for key in state):
        return MTV_KIND
    if any(key.startswith(("encoder.", "decoder.")) for key in state):
        return VAE_KIND
    raise ModelFileError(
        "not an official MTV checkpoint (no 'model.diffusion_model.*' tensors) nor a SAT 3D VAE "
        "('encoder.*' / 'decoder.*'); pass mtv/<variant>/1/mp_rank_00_model_states.pt or vae/3d-vae.pt"
    )


def convert_checkpoint(source: str | Path, output: str | Path, dtype: torch.dtype | None = None, variant: str | None = None,
                       latent_size: tuple[int, int] | None = None) -> ConversionReport:
    """Convert an official MTV .pt or SAT 3d-vae.pt; the output holds its config in the metadata."""
    state = unwrap_state_dict(load_pickled_state_dict(source))
    if not isinstance(state, dict) or not state:
        raise ModelFileError(f"{source}: holds no tensors")
    try:
        kind = detect_kind(state)
    except ModelFileError as error:
        raise ModelFileError(f"{source}: {error}") from None
    if kind == MTV_KIND:
        tensors, report = _convert_mtv(state, variant, latent_size)
    else:
        tensors, report = _convert_vae(state)
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    if report.ok:
        save_safetensors(output, tensors, report.config, kind)
    return report


def _convert_mtv(state, variant, latent_size):
    sat = strip_prefix(state)
    config = infer_mtv_config(sat, latent_size=latent_size)
    if variant:
        if (variant == "multi") != config["multi_speaker"]:
            raise ModelFileError(f"--variant {variant} does not fit this checkpoint, which is a {config['variant']} model")
        config["variant"] = variant
    tensors, dropped, unknown = convert_mtv_state_dict(sat)
    with torch.device("meta"):
        expected = MTVTransformer3DModel(**config).state_dict()
    report = ConversionReport(MTV_KIND, config, converted=len(tensors), dropped=dropped)
    report.missing = sorted(set(expected) - set(tensors))
    report.unexpected = sorted(unknown) + sorted(set(tensors) - set(expected))
    report.unexpected += [
        f"{key} (shape {tuple(tensors[key].shape)}, expected {tuple(expected[key].shape)})"
        for key in sorted(set(tensors) & set(expected))
        if tensors[key].shape != expected[key].shape
    ]
    return tensors, report


def _convert_vae(state):
    tensors = convert_vae_state_dict(state)
    config = _infer_vae_config(tensors)
    with torch.device("meta"):
        expected = AutoencoderKLCogVideoX(**config).state_dict()
    report = ConversionReport(VAE_KIND, {**config}, converted=len(tensors))
    report.missing = sorted(set(expected) - set(tensors))
    report.unexpected = sorted(set(tensors) - set(expected))
    return tensors, report


def _infer_vae_config(tensors: dict) -> dict:
    """Channel widths from the encoder's down blocks; CogVideoX-5B defaults for the rest (scale 0.7)."""
    blocks = sorted({int(k.split(".")[2]) for k in tensors if k.startswith("encoder.down_blocks.")})
    widths = tuple(tensors[f"encoder.down_blocks.{i}.resnets.0.conv2.conv.weight"].shape[0] for i in blocks)
    latent = tensors["decoder.conv_in.conv.weight"].shape[1]
    layers = 1 + max(int(k.split(".")[4]) for k in tensors if k.startswith("encoder.down_blocks.0.resnets."))
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))
    return dict(
        block_out_channels=widths,
        down_block_types=("CogVideoXDownBlock3D",) * len(widths),
        up_block_types=("CogVideoXUpBlock3D",) * len(widths),
        latent_channels=latent,
        layers_per_block=layers,
        norm_num_groups=groups,
        scaling_factor=0.7,
    )
