"""fp8 weight storage: a Linear whose weight is float8_e4m3fn with one scale per output row. The converter writes
files in this form and the loader builds it straight from them, so both give the same numbers as converting a loaded
model."""

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight as float8_e4m3fn, one scale per row in the weight's dtype) with weight ≈ fp8 * scale."""
    values = weight.detach().float()
    scale = values.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return (values / scale).to(FP8_DTYPE), scale.to(weight.dtype)


class FP8Linear(nn.Module):
    """A Linear whose weight is stored as float8_e4m3fn with one scale per output row, upcast to the input's dtype
    at every forward. Halves weight memory against bf16; the matmul runs in the input's precision."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight_fp8, scale = quantize_rows(linear.weight)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_fp8", weight_fp8)
        self.register_buffer("weight_scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_fp8.to(self.weight_scale.dtype) * self.weight_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_fp8.to(x.dtype) * self.weight_scale.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)


def convert_linears_to_fp8(module: nn.Module) -> int:
    """Replace every nn.Linear inside `module` by an FP8Linear; returns how many were replaced.
    Do this after any dtype cast of the model: a later `.to(dtype)` would upcast the fp8 buffers again."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, FP8Linear(child))
            count += 1
        else:
            count += convert_linears_to_fp8(child)
    return count


def fp8_linear_weights(module: nn.Module, prefix: str) -> set[str]:
    """State-dict names (under `prefix`) of the Linear weights `convert_linears_to_fp8(module)` would store as fp8."""
    return {f"{prefix}{name}.weight" for name, child in module.named_modules() if isinstance(child, nn.Linear)}


def dequantized_state(state: dict) -> dict:
    """A state dict with every fp8 weight (`X.weight_fp8` and its row scales `X.weight_scale`) replaced by the plain
    `X.weight` it stands for, fp8 x scale in the scale's dtype (what FP8Linear.weight gives): the weights of the same
    model without fp8 blocks."""
    result = {}
    for key, value in state.items():
        if key.endswith(".weight_fp8"):
            stem = key[: -len("_fp8")]
            scale = state[stem + "_scale"]
            result[stem] = value.to(scale.dtype) * scale
        elif not (key.endswith(".weight_scale") and key[: -len("_scale")] + "_fp8" in state):
            result[key] = value
    return result
