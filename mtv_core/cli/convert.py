"""`python -m mtv_core convert`: official MTV .pt (or SAT 3d-vae.pt) -> safetensors."""

import argparse

DTYPES = {"keep": None, "bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp8": "bfloat16"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="official mtv/<variant>/1/mp_rank_00_model_states.pt, or vae/3d-vae.pt")
    parser.add_argument("--output", required=True, help="the .safetensors file to write (written atomically)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="keep", help="store weights in this dtype (default: as in the input); fp8: the transformer blocks' "
                        "Linear weights as float8_e4m3fn with a scale per row, the rest bf16")
    parser.add_argument("--variant", choices=["single", "accm", "multi"], help="label the model (single and accm share one architecture)")
    parser.add_argument("--latent-size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"),
                        help="latent size if it cannot be told from the position table (official: 60 90)")


def run(args) -> int:
    import torch

    from ..checkpoints.convert import convert_checkpoint

    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None
    report = convert_checkpoint(args.input, args.output, dtype=dtype, variant=args.variant, fp8=args.dtype == "fp8",
                                latent_size=tuple(args.latent_size) if args.latent_size else None)
    for line in report.lines():
        print(line)
    if not report.ok:
        print(f"not written: {args.output} (the checkpoint does not map completely; see missing/unexpected above)")
        return 1
    print(f"wrote {args.output}")
    return 0
