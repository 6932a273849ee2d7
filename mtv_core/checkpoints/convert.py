"""One-time conversion of the official SAT checkpoints (MTV DiT, 3D VAE) to the safetensors files the loaders read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from ..errors import ConfigError, ModelFileError
from ..models import MTVTransformer3DModel
from ..models.fp8 import FP8_DTYPE, fp8_linear_weights, quantize_rows
from .files import (
    LazyCheckpoint,
    PlannedTensor,
    save_safetensors,
    stream_safetensors,
    unwrap_state_dict,
)
from .sat_keys import (
    MTV_PREFIX,
    conversion_units,
    convert_mtv_state_dict,
    convert_vae_state_dict,
    infer_mtv_config,
    strip_prefix,
)
from .transformer import MTV_KIND
from .vae import VAE_KIND


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
                       latent_size: tuple[int, int] | None = None, fp8: bool = False, progress=None) -> ConversionReport:
    """Convert an official MTV .pt or SAT 3d-vae.pt; the output holds its config in the metadata.

    An MTV checkpoint is read, converted and written a block of rows at a time (its 23 GB never sit in memory). `fp8`
    stores the transformer blocks' Linear weights as float8_e4m3fn with a scale per row (what the fp8 memory option
    makes of a loaded model), the rest in `dtype`. `progress(bytes_written, total_bytes)` follows the writing.
    """
    checkpoint = LazyCheckpoint(source)
    state = unwrap_state_dict(checkpoint.saved)
    if not isinstance(state, dict) or not state:
        raise ModelFileError(f"{source}: holds no tensors")
    try:
        kind = detect_kind(state)
    except ModelFileError as error:
        raise ModelFileError(f"{source}: {error}") from None
    if kind == MTV_KIND:
        return _convert_mtv(checkpoint, strip_prefix(state), output, MTVStorage(dtype, fp8), variant, latent_size, progress)
    if fp8:
        raise ConfigError(f"{source}: fp8 storage is for the MTV transformer, and this is a VAE; convert it with bf16 or fp32")
    tensors, report = _convert_vae({key: checkpoint.load(value) for key, value in state.items()})
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    if report.ok:
        save_safetensors(output, tensors, report.config, kind)
    return report


@dataclass(frozen=True)
class MTVStorage:
    """How converted MTV tensors are stored: floats in `dtype` (None: as in the checkpoint), and with `fp8` the
    named Linear weights as float8_e4m3fn + per-row scale."""
    dtype: torch.dtype | None = None
    fp8: bool = False

    def planned(self, name: str, tensor: torch.Tensor, fp8_names: set[str]) -> list[PlannedTensor]:
        dtype = self.dtype if self.dtype is not None and tensor.is_floating_point() else tensor.dtype
        if self.fp8 and name in fp8_names:
            return [PlannedTensor(name + "_fp8", FP8_DTYPE, tuple(tensor.shape)),
                    PlannedTensor(name + "_scale", dtype, (tensor.shape[0], 1))]
        return [PlannedTensor(name, dtype, tuple(tensor.shape))]

    def stored(self, name: str, blocks: Iterable[torch.Tensor], fp8_names: set[str]) -> list[Iterator[torch.Tensor]]:
        """The blocks of each planned tensor `name` becomes (two for an fp8 weight: the weight, then its scales)."""
        cast = (block.to(self.dtype) if self.dtype is not None and block.is_floating_point() else block for block in blocks)
        if not (self.fp8 and name in fp8_names):
            return [cast]
        scales = []

        def weights():
            for block in cast:
                weight, scale = quantize_rows(block)
                scales.append(scale)
                yield weight

        def row_scales():
            yield torch.cat(scales)

        return [weights(), row_scales()]


def _convert_mtv(checkpoint: LazyCheckpoint, sat: dict, output, storage: MTVStorage, variant, latent_size, progress):
    config = infer_mtv_config(sat, latent_size=latent_size)
    if variant:
        if (variant == "multi") != config["multi_speaker"]:
            raise ModelFileError(f"variant {variant!r} does not fit this checkpoint, which is a {config['variant']} model")
        config["variant"] = variant
    units, shapes, report = _plan_mtv(sat, config)
    if not report.ok:
        return report
    with torch.device("meta"):
        blocks = MTVTransformer3DModel(**config).transformer_blocks
    fp8_names = fp8_linear_weights(blocks, "transformer_blocks.")
    planned = [entry for name, meta in shapes.items() for entry in storage.planned(name, meta, fp8_names)]
    parts = _converted_parts(checkpoint, sat, units, storage, fp8_names)
    stream_safetensors(output, planned, parts, report.config, MTV_KIND, progress)
    return report


def _plan_mtv(sat: dict, config: dict):
    """The conversion run on the meta tensors: the units to convert (dropped keys left out), the output names and
    shapes in the order they will be written, and the report."""
    units, shapes, dropped, unknown = [], {}, [], []
    for unit in conversion_units(sat):
        converted, unit_dropped, unit_unknown = convert_mtv_state_dict({key: sat[key] for key in unit})
        dropped += unit_dropped
        unknown += unit_unknown
        if converted:
            units.append([key for key in unit if key not in unit_dropped and key not in unit_unknown])
            shapes.update(converted)
    with torch.device("meta"):
        expected = MTVTransformer3DModel(**config).state_dict()
    report = ConversionReport(MTV_KIND, config, converted=len(shapes), dropped=dropped)
    report.missing = sorted(set(expected) - set(shapes))
    report.unexpected = sorted(unknown) + sorted(set(shapes) - set(expected))
    report.unexpected += [
        f"{key} (shape {tuple(shapes[key].shape)}, expected {tuple(expected[key].shape)})"
        for key in sorted(set(shapes) & set(expected))
        if shapes[key].shape != expected[key].shape
    ]
    return units, shapes, report


def _converted_parts(checkpoint: LazyCheckpoint, sat: dict, units: list, storage: MTVStorage, fp8_names: set[str]):
    """Each planned tensor's blocks, in the planned order. An output that is a view of a file tensor (renamed, or
    rows of a fused qkv) is read from the file in blocks of rows; one computed from several (the AdaLN reorder, the
    speaker table) is converted from its unit's source tensors, which are small."""
    for unit in units:
        outputs, _, _ = convert_mtv_state_dict({key: sat[key] for key in unit})
        computed = None
        for name, meta in outputs.items():
            if checkpoint.in_file(meta):
                blocks = checkpoint.blocks(meta)
            else:
                computed = computed or convert_mtv_state_dict({key: checkpoint.load(sat[key]) for key in unit})[0]
                blocks = iter([computed[name]])
            yield from storage.stored(name, blocks, fp8_names)


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
