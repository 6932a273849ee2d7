"""`python -m mtv_lab evaluate --world DIR --videos NAME=DIR ... --out REPORT_DIR`: score generated
videos (mp4s named like the world's clips) against the world's ground truth."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", required=True, help="folder written by `python -m mtv_lab world`")
    parser.add_argument("--videos", nargs="*", default=[], metavar="NAME=DIR", help="a model's generated mp4s, one row each")
    parser.add_argument("--ground-truth", action="store_true", help="add a row for the world's own videos (the ceiling)")
    parser.add_argument("--static", action="store_true", help="add a row for the first frame held still (the floor)")
    parser.add_argument("--out", required=True, help="folder for report.json and plots/")
    parser.add_argument("--no-plots", action="store_true", help="skip the per-clip PNGs")
    parser.add_argument("--long-form", action="store_true",
                        help="also measure over time: every metric per window, flicker at latent boundaries and segment "
                             "seams, colour drift, the audio-visual offset at start and end, mouths at rest")
    parser.add_argument("--window-seconds", type=float, default=4.0, help="--long-form: window length")
    parser.add_argument("--offset-seconds", type=float, default=10.0,
                        help="--long-form: how much of the start and of the end the offset is measured on")


def parse_variants(items: list[str]) -> dict[str, str]:
    from mtv_core.errors import ConfigError

    variants = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--videos {item!r} is not NAME=DIR; write e.g. --videos tiny=outputs/tiny")
        variants[name] = folder
    return variants


def run(args) -> int:
    from pathlib import Path

    from mtv_core.errors import ConfigError

    from ..evaluation.longform_report import format_long_form, long_form_report
    from ..evaluation.report import format_table, summarise, write_report
    from ..world import world_clips

    if args.long_form and min(args.window_seconds, args.offset_seconds) <= 0:
        raise ConfigError(f"--window-seconds {args.window_seconds:g} and --offset-seconds {args.offset_seconds:g} must be "
                          "positive; use e.g. 4 and 10")
    world, out = Path(args.world), Path(args.out)
    specs = world_clips(world)
    sources = {name: Path(folder) for name, folder in parse_variants(args.videos).items()}
    loaders = video_loaders(args, world, specs, sources)
    out.mkdir(parents=True, exist_ok=True)
    results, long_form = evaluate_variants(args, world, specs, sources, loaders, out)
    rows = summarise(results)
    print(format_table(rows))
    extra = {}
    if args.long_form:
        print("\n" + format_long_form(long_form))
        extra["long_form"] = long_form_report(long_form)
    print(f"wrote {write_report(out, results, rows, extra)}")
    return 0


def video_loaders(args, world, specs, sources: dict) -> dict:
    """Variant name -> a function giving a clip's frames: each --videos folder, and the truth and the still floor."""
    import numpy as np

    from mtv_core.errors import ConfigError

    from ..evaluation.videos import clip_frames, read_frames

    if args.ground_truth or args.static:
        truth_frames = {spec.name: read_frames(world / f"{spec.name}.mp4")[0] for spec in specs}
    loaders = {name: (lambda spec, folder=folder: clip_frames(folder / f"{spec.name}.mp4", spec)) for name, folder in sources.items()}
    if args.ground_truth:
        loaders["ground_truth"] = lambda spec: truth_frames[spec.name]
    if args.static:
        loaders["static"] = lambda spec: np.repeat(truth_frames[spec.name][:1], spec.frames, axis=0)
    if not loaders:
        raise ConfigError("nothing to evaluate; pass --videos NAME=DIR and/or --ground-truth / --static")
    for name, folder in sources.items():
        if not any((folder / f"{spec.name}.mp4").is_file() for spec in specs):
            raise ConfigError(f"--videos {name}={folder}: no mp4 named like a world clip (e.g. {specs[0].name}.mp4); "
                              "name each generated video after the world clip it was made from")
    return loaders


def evaluate_variants(args, world, specs, sources: dict, loaders: dict, out) -> tuple[dict, dict]:
    """Every variant's clips scored (and, with --long-form, measured over time); plots written unless --no-plots."""
    from ..evaluation.longform_report import evaluate_long_form
    from ..evaluation.measures import evaluate_clip
    from ..evaluation.report import plot_clip
    from ..evaluation.videos import clip_audio, read_frames

    audio = {spec.name: clip_audio(world, spec) for spec in specs}
    results, long_form = {}, {}
    for variant, load in loaders.items():
        results[variant], long_form[variant] = {}, {}
        for spec in specs:
            if variant in sources and not (sources[variant] / f"{spec.name}.mp4").is_file():
                print(f"  {variant}: no {spec.name}.mp4, skipped")
                continue
            frames = load(spec)
            evaluation = evaluate_clip(frames, audio[spec.name], spec.sample_rate, spec)
            results[variant][spec.name] = evaluation
            if args.long_form:
                truth = read_frames(world / f"{spec.name}.mp4")[0]
                long_form[variant][spec.name] = evaluate_long_form(frames, truth, audio[spec.name], spec,
                                                                   args.window_seconds, args.offset_seconds)
            if not args.no_plots:
                plot_clip(out / "plots" / variant / f"{spec.name}.png", spec, audio[spec.name], spec.sample_rate, evaluation, variant)
    return results, long_form
