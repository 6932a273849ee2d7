"""`python -m mtv_lab world --out DIR --clips N --seed S`: a synthetic dataset with exact ground truth."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the clips (mp4 + stem WAVs + truth JSON) and captions.csv")
    parser.add_argument("--clips", type=int, default=10, help="number of clips; kinds cycle through --kinds")
    parser.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                        help="kinds to cycle through (default: the five subsets; full_scene: speech, an effect and music at once)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same world")
    parser.add_argument("--frames", type=int, default=72, help="frames per clip (at least 56 for trainer prepare)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="clip length in seconds instead of --frames (e.g. 60 to 180 for long-form evaluation)")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--height", type=int, default=64, help="a multiple of 8, at least 48")
    parser.add_argument("--width", type=int, default=96, help="a multiple of 8, at least 64")
    parser.add_argument("--quiet-events", action="store_true",
                        help="training data: each sound-event clip has a 30-59-frame silent stretch, a quarter of them no hit at all")
    parser.add_argument("--speech-pauses", action="store_true",
                        help="speech stops for 1.5-4 s after every 3-8 s of talk (long clips: mouths must rest in the pauses)")
    parser.add_argument("--mood-change", action="store_true",
                        help="in every clip with music the music switches once to the other mood (major <-> minor) at a time "
                             "drawn from the middle third of the clip, and the wall colour cuts to follow it; the truth JSON "
                             "states the frame and the new mood (mood_change)")


def run(args) -> int:
    from ..world import WorldSettings, write_world

    kinds = {"kinds": tuple(args.kinds)} if args.kinds else {}
    frames = args.frames if args.seconds is None else int(round(args.seconds * args.fps))
    settings = WorldSettings(seed=args.seed, clips=args.clips, frames=frames, fps=args.fps, height=args.height,
                             width=args.width, quiet_events=args.quiet_events, speech_pauses=args.speech_pauses,
                             mood_change=args.mood_change, **kinds)
    specs = write_world(args.out, settings, progress=lambda spec: print(f"  {spec.name}: {spec.caption[:90]}"))
    print(f"wrote {len(specs)} clips to {args.out} (captions.csv, world.json); "
          f"next: python -m trainer prepare --clips {args.out} --captions {args.out}/captions.csv ...")
    return 0
