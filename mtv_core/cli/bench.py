"""`python -m mtv_core bench model`: one denoising forward of MTV vs plain CogVideoX, same size."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["model"], help="what to benchmark")
    parser.add_argument("--config", default="tiny-single", help="named config (tiny-single, official-5b-single, ...)")
    parser.add_argument("--layers", type=int, help="override the number of transformer layers")
    parser.add_argument("--latent-size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"), help="override the latent size")
    parser.add_argument("--batch", type=int, default=2, help="batch (2 = one step with CFG)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--attention", default="sdpa", help="attention backend: sdpa, xformers, sage, math")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def run(args) -> int:
    import torch

    from ..attention import resolve_backend
    from ..bench import bench_model
    from ..models import mtv_config

    overrides = {}
    if args.layers:
        overrides["num_layers"] = args.layers
    if args.latent_size:
        overrides.update(sample_height=args.latent_size[0], sample_width=args.latent_size[1])
    config = mtv_config(args.config, **overrides)
    backend = resolve_backend(args.attention)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    results = bench_model(config, batch=args.batch, repeats=args.repeats, device=args.device, dtype=dtype, attention_backend=backend)
    print(f"config {args.config} ({config['num_layers']} layers, latent {config['sample_height']}x{config['sample_width']}), "
          f"batch {args.batch}, {args.dtype}, {args.device}")
    for result in results:
        print(f"{result.name:10s} {result.seconds * 1000:10.1f} ms/forward   peak {result.peak_bytes / 2**20:9.1f} MiB")
    mtv, plain = results
    print(f"ratio mtv/cogvideox: time {mtv.seconds / plain.seconds:.2f}x, memory {mtv.peak_bytes / max(plain.peak_bytes, 1):.2f}x")
    return 0
