"""`python -m mtv_core bench model|pipeline`: MTV against plain CogVideoX of the same size, random weights (nothing
is downloaded). `model`: one denoising forward. `pipeline`: one segment's sampler steps with the memory and speed
options of `generate`."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["model", "pipeline"], help="one forward, or a segment's sampler steps")
    parser.add_argument("--config", default="tiny-single", help="named config (tiny-single, official-5b-single, ...)")
    parser.add_argument("--layers", type=int, help="override the number of transformer layers")
    parser.add_argument("--latent-size", nargs=2, type=int, metavar=("HEIGHT", "WIDTH"), help="override the latent size")
    parser.add_argument("--batch", type=int, default=2, help="batch (2 = one step with CFG)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--attention", default="sdpa", help="attention backend: sdpa, xformers, sage, math")
    pipeline = parser.add_argument_group("pipeline")
    pipeline.add_argument("--steps", type=int, default=10, help="sampler steps (the first is reported apart)")
    pipeline.add_argument("--cache", help="step cache, as in generate: fbc[:THRESHOLD] or taylorseer[:INTERVAL]")
    pipeline.add_argument("--compile", action="store_true", help="compile the transformer blocks")
    pipeline.add_argument("--block-swap", type=int, default=0, help="transformer blocks kept in CPU memory")
    pipeline.add_argument("--fp8", action="store_true", help="transformer-block weights in float8_e4m3fn")
    pipeline.add_argument("--offload", action="store_true", help="the transformer on the device only while it samples")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def run(args) -> int:
    import torch

    from ...attention import resolve_backend
    from ...models import mtv_config

    overrides = {}
    if args.layers:
        overrides["num_layers"] = args.layers
    if args.latent_size:
        overrides.update(sample_height=args.latent_size[0], sample_width=args.latent_size[1])
    config = mtv_config(args.config, **overrides)
    backend = resolve_backend(args.attention)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    print(f"config {args.config} ({config['num_layers']} layers, latent {config['sample_height']}x{config['sample_width']}), "
          f"{args.dtype}, {args.device}", flush=True)
    if args.what == "pipeline":
        return _pipeline(args, config, dtype, backend)
    from .runs import bench_model

    results = bench_model(config, batch=args.batch, repeats=args.repeats, device=args.device, dtype=dtype, attention_backend=backend)
    print(f"batch {args.batch}")
    for result in results:
        print(f"{result.name:10s} {result.seconds * 1000:10.1f} ms/forward ({result.block_seconds * 1000:.1f} ms in one "
              f"transformer block)   peak {result.peak_bytes / 2**20:9.1f} MiB")
    mtv, plain = results
    print(f"ratio mtv/cogvideox: time {mtv.seconds / plain.seconds:.2f}x, memory {mtv.peak_bytes / max(plain.peak_bytes, 1):.2f}x, "
          f"per transformer block {mtv.block_seconds / plain.block_seconds:.2f}x")
    layers = mtv_config(args.config)["num_layers"]
    if layers != config["num_layers"]:
        print(f"at the full {layers} layers (the rest of the forward measured once): time "
              f"{_full_size(mtv, config, layers) / _full_size(plain, config, layers):.2f}x")
    return 0


def _full_size(result, config: dict, layers: int) -> float:
    """Forward seconds with `layers` blocks, from a run with config["num_layers"] blocks."""
    outside = result.seconds - result.block_seconds * config["num_layers"]
    return outside + result.block_seconds * layers


def _pipeline(args, config: dict, dtype, backend: str) -> int:
    from .runs import bench_pipeline
    from ...pipeline.generate import GenerationConfig, MemoryOptions
    from ...pipeline.speed import StepCache

    cache = StepCache.parse(args.cache)
    if cache is not None:
        cache.check_blocks(config["num_layers"])
    memory = MemoryOptions(device=args.device, offload_components=args.offload, block_swap=args.block_swap,
                           fp8=args.fp8, compile=args.compile)
    GenerationConfig(steps=args.steps)  # checks the step count before anything is built
    options = [f"cache {cache}" if cache else "", "compile" if args.compile else "", "fp8" if args.fp8 else "",
               f"block swap {args.block_swap}" if args.block_swap else "", "offload" if args.offload else ""]
    print(f"{args.steps} steps, two guidance branches per step; {', '.join(o for o in options if o) or 'no options'}", flush=True)
    results = bench_pipeline(config, args.steps, memory, cache, dtype, backend)
    memory_kind = "VRAM" if memory.device.startswith("cuda") else "RSS growth"
    for result in results:
        print(f"{result.name:10s} {result.seconds_per_step:8.3f} s/step (first step {result.first_step:.3f} s)   "
              f"peak {memory_kind} {result.peak_bytes / 2**30:7.2f} GiB   attention skipped {result.attention_skipped:.0%}")
    mtv, plain = results
    print(f"ratio mtv/cogvideox: time {mtv.seconds_per_step / plain.seconds_per_step:.2f}x, "
          f"memory {mtv.peak_bytes / max(plain.peak_bytes, 1):.2f}x")
    return 0
