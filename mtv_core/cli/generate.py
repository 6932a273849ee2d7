"""`python -m mtv_core generate`: audio + prompt -> mp4. Heavy imports happen inside `run`."""

import argparse
import sys

from ..demo import EXAMPLES
from ..spec import GUIDANCE_ORDER, MAX_STRENGTH, OFFICIAL_GUIDANCE, SAMPLERS, SPEECH2, SPEECH_GATE_DBFS, STEMS, STREAMS
from .demix import gate_level

MODEL_ARGUMENTS = ("model", "vae", "t5", "wav2vec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("input and output")
    io.add_argument("--audio", help="soundtrack (any audio or video file)")
    io.add_argument("--example", nargs="?", const="talking_face", choices=list(EXAMPLES), metavar="NAME",
                    help="use a built-in demo example: its soundtrack, stems and caption (with the demo model); "
                         "talking_face (the default) or full_scene (speech, hits and music at once)")
    io.add_argument("--prompt", help="text prompt (a structured MTV caption works best)")
    io.add_argument("--prompt-schedule", help='JSON list of {"prompt", "start", "transition"} for scene changes')
    io.add_argument("--out", required=True, help="output .mp4")
    io.add_argument("--start-image", help="first frame (resized and centre-cropped to the model's size)")
    io.add_argument("--mux", default="mix", help="audio in the mp4: 'mix' or streams to sum, e.g. speech,music")
    io.add_argument("--work-dir", help="folder for finished segments (default: <out>.segments); reruns resume")
    io.add_argument("--keep-segments", action="store_true", help="keep the segment files after the mp4 is written")

    models = parser.add_argument_group("model files (local; nothing is downloaded)")
    models.add_argument("--model", help="converted MTV transformer .safetensors")
    models.add_argument("--vae", help="CogVideoX VAE: converted .safetensors or diffusers folder")
    models.add_argument("--t5", help="T5 v1.1 XXL folder (encoder + tokenizer)")
    models.add_argument("--wav2vec", help="wav2vec2-base-960h folder or .safetensors")
    models.add_argument("--demixer", nargs="+", default=[], help="HTDemucs file(s); or pass stems below")
    for stem in STEMS:
        models.add_argument(f"--{stem}", help=f"pre-separated {stem} stem (with --demixer: used instead of its {stem})")
    models.add_argument(f"--{SPEECH2}", help="the second speaker's speech, for the two-speaker (multi) model")
    models.add_argument("--speech-gate-dbfs", type=gate_level, default=SPEECH_GATE_DBFS,
                        help=f"with --demixer: silence its speech stem where it stays quieter than this (default "
                             f"{SPEECH_GATE_DBFS:g}: what it leaks there between lines moves mouths); 'off' keeps it as "
                             "separated")
    models.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                        help="an MTV LoRA (python -m trainer --train lora) at a strength (default 1); repeat to stack")
    speakers = models.add_mutually_exclusive_group()
    speakers.add_argument("--speaker-ranges", default="", help="two speakers in one speech track: '0-2.5:1, 2.5-5:2' (seconds:speaker)")
    speakers.add_argument("--speakers", choices=("auto",),
                          help="auto: find the two speakers in the speech track (pip install \"comfyui-mtv[speakers]\"); "
                               "prints the ranges found, to correct by hand with --speaker-ranges")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, default=30, help="sampler steps (official: 20, 30 or 50)")
    sampling.add_argument("--seed", type=int, default=0)
    sampling.add_argument("--sampler", default="dpm", choices=SAMPLERS, help="dpm (official) or ddim")
    sampling.add_argument("--guidance", type=float, help=f"joint guidance scale (official {OFFICIAL_GUIDANCE}; the "
                                                           "demo model's default pushes speech and effects harder)")
    for name in GUIDANCE_ORDER:
        sampling.add_argument(f"--{name}-guidance", type=float, help=f"{name} scale (nested; default: --guidance)")
    sampling.add_argument("--silent-guidance", type=float,
                          help="scale for a stream encoded from silence, an absent or silent stem (default: the text "
                               "scale, or the demo model's own; 1 = not guided)")
    sampling.add_argument("--guidance-until",
                          help="guide only the first part of the noise schedule: one fraction for every condition "
                               "(0.6) or per condition ('speech=0.6,text=0.6,music=0.6'); a stopped condition is "
                               "conditioned but not pushed, and with all stopped a step is one forward (default: every "
                               "step, as the official sampler does; on the demo's close-ups 'speech=0.6,text=0.6,"
                               "music=0.6' flickered less, on its small figures it lost the lip sync)")
    sampling.add_argument("--speech-in-pauses", type=float,
                          help="speech guidance scale in the latent frames where nobody speaks (the speech stem below "
                               "-45 dBFS a quarter second around; default: the speech scale everywhere). On the demo's "
                               "two-minute close-up 1 held the wall's colour within 3.6 levels where the default drifted "
                               "11, with the same lip sync; small figures' mouths moved more in the pauses (README, "
                               "Long clips)")
    sampling.add_argument("--speech-pause-keep", type=float,
                          help="with --speech-in-pauses: the share of each pause frame's positions (0..1) that keep "
                               "the speech scale, where speech pushes hardest (on the demo the mouths: 0.1 kept resting "
                               "mouths nearly as still as the default and halved the drift)")
    for name in STEMS:
        sampling.add_argument(f"--{name}-strength", type=float, default=1.0,
                              help=f"how strongly {name} drives the video: 0 (its null input) .. {MAX_STRENGTH:g} (1 = as trained)")
    sampling.add_argument("--colour-match", action=argparse.BooleanOptionalAction, default=False,
                          help="shift each segment's colours to the previous segment's tail (off: the official chaining)")

    speed = parser.add_argument_group("speed")
    speed.add_argument("--cache", help="step cache: fbc[:THRESHOLD] (first-block cache, default 0.15) or "
                                       "taylorseer[:INTERVAL] (default 2); approximate, audio-aware")
    speed.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks (one graph for all)")
    speed.add_argument("--parallel", default="auto",
                       help="under torchrun --nproc-per-node N: how the N processes share each step: auto, or "
                            "ulysses=U,branches=B (U processes split the rows of every frame, B groups split the "
                            "guidance branches; U x B = N)")

    memory = parser.add_argument_group("memory")
    memory.add_argument("--device", default="auto", help="cuda, cpu, ... (default: cuda when present)")
    memory.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    memory.add_argument("--offload", action="store_true", help="keep each component on the device only while it runs")
    memory.add_argument("--block-swap", type=int, default=0, help="transformer blocks kept in CPU memory")
    memory.add_argument("--fp8", action="store_true", help="store transformer-block weights as float8_e4m3fn")
    memory.add_argument("--vae-tile", type=int, help="decode the VAE in spatial tiles of this many latents")


def _schedule(args):
    from ..errors import ConfigError
    from ..pipeline.prompt_schedule import PromptSchedule, load_prompt_schedule

    if bool(args.prompt) == bool(args.prompt_schedule):
        raise ConfigError("give exactly one of --prompt TEXT or --prompt-schedule FILE.json")
    return load_prompt_schedule(args.prompt_schedule) if args.prompt_schedule else PromptSchedule.single(args.prompt)


def _guidance_scale(args, name: str, demo_model: bool) -> float:
    """The stream's own scale if given, else --guidance, else the demo's scale (demo model) or the official one."""
    from .. import demo

    for scale in (getattr(args, f"{name}_guidance"), args.guidance):
        if scale is not None:
            return scale
    return demo.GUIDANCE[name] if demo_model else OFFICIAL_GUIDANCE


def _silent_guidance(args, demo_model: bool) -> float | None:
    """--silent-guidance if given, else the demo's (demo model, no joint --guidance), else None: the text scale."""
    from .. import demo

    if args.silent_guidance is not None:
        return args.silent_guidance
    return demo.GUIDANCE["silent"] if demo_model and args.guidance is None else None


def _use_demo_defaults(args) -> bool:
    """No model files given: the built-in demo model; --example also fills the soundtrack, stems and caption.
    Returns whether the demo model is used."""
    from .. import demo
    from ..errors import ConfigError

    given = [name for name in MODEL_ARGUMENTS if getattr(args, name)]
    if given and len(given) < len(MODEL_ARGUMENTS):
        missing = " ".join(f"--{name}" for name in MODEL_ARGUMENTS if name not in given)
        raise ConfigError(f"missing model files: {missing}. Pass all of --model (converted MTV .safetensors), --vae "
                          "(CogVideoX VAE), --t5 (T5 v1.1 XXL folder) and --wav2vec (wav2vec2-base-960h), or none of "
                          "them to use the built-in demo model")
    if not given:
        demo.require_demo()
        args.model, args.vae, args.t5, args.wav2vec = map(str, (demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC))
    if args.example:
        args.audio = args.audio or str(demo.example_audio(args.example))
        for name, path in demo.example_stems(args.example).items():
            setattr(args, name, getattr(args, name) or str(path))
        if not args.prompt_schedule:
            args.prompt = args.prompt or demo.example_prompt(args.example)
    if not args.audio:
        raise ConfigError("no soundtrack: pass --audio FILE (or --example for the demo's example)")
    stems = any(getattr(args, name) for name in STREAMS)
    if not given and not args.demixer and not stems:
        args.demixer = [str(demo.DEMIXER)]
        print(DEMO_DEMIXER_NOTICE, file=sys.stderr)
    return not given


DEMO_DEMIXER_NOTICE = (
    "demixing with the built-in demo demixer: a small HTDemucs trained only on the synthetic world's speech, hits and "
    "chords. It splits sounds like those; on a real recording its stems are rough. For real audio pass --demixer with "
    "a real HTDemucs model, or the stems yourself (--speech/--effects/--music).")


def build_job(args):
    import torch

    from ..checkpoints import parse_lora_argument
    from ..pipeline.generate import GenerationConfig, MemoryOptions
    from ..pipeline.guidance import GuidanceScales, parse_until
    from .job import GenerationJob, ModelFiles
    from ..pipeline.memory import resolve_device
    from ..pipeline.speed import StepCache

    demo_model = _use_demo_defaults(args)
    guidance = GuidanceScales(*(_guidance_scale(args, name, demo_model) for name in GUIDANCE_ORDER),
                              silent=_silent_guidance(args, demo_model),
                              until=parse_until(args.guidance_until or ""), speech_in_pauses=args.speech_in_pauses,
                              speech_pause_keep=args.speech_pause_keep)
    device = resolve_device(args.device)
    dtype_name = args.dtype if args.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    stream_files = {name: getattr(args, name) for name in STREAMS if getattr(args, name)}
    return GenerationJob(
        audio=args.audio, schedule=_schedule(args), out=args.out,
        files=ModelFiles(args.model, args.vae, args.t5, args.wav2vec, tuple(args.demixer), stream_files),
        config=GenerationConfig(steps=args.steps, seed=args.seed, guidance=guidance, sampler=args.sampler,
                                colour_match=args.colour_match, cache=StepCache.parse(args.cache),
                                loras=tuple(parse_lora_argument(text) for text in args.lora)),
        memory=MemoryOptions(device=device, offload_components=args.offload, block_swap=args.block_swap,
                             fp8=args.fp8, vae_tile_latents=args.vae_tile, compile=args.compile),
        start_image=args.start_image, mux=tuple(part.strip() for part in args.mux.split(",") if part.strip()),
        work_dir=args.work_dir, dtype=getattr(torch, dtype_name), keep_segments=args.keep_segments,
        speaker_ranges=args.speakers or args.speaker_ranges, strengths={name: getattr(args, f"{name}_strength") for name in STEMS},
        parallel=args.parallel, speech_gate_dbfs=args.speech_gate_dbfs)


class TerminalProgress:
    """One line on stderr that moves: the sampler's steps over the job, then each segment's decoding slice by slice."""

    def __init__(self, steps_per_segment: int):
        self.steps_per_segment, self.step, self.total = steps_per_segment, 0, 0

    def sampling(self, step: int, total: int) -> None:
        self.step, self.total = step, total
        _show(f"step {step}/{total}", step == total)

    def decoding(self, done: int, total: int) -> None:
        # Sampling a segment ends at step (k + 1) x steps, so the last step told names the segment being decoded.
        segment, segments = -(-self.step // self.steps_per_segment), self.total // self.steps_per_segment
        _show(f"decoding segment {segment}/{segments}: slice {done}/{total}", done == total)


def _show(line: str, last: bool) -> None:
    print(f"\r{line}", end="\n" if last else "", file=sys.stderr, flush=True)


def run(args) -> int:
    from .job import run_job

    job = build_job(args)
    terminal = TerminalProgress(job.config.steps)
    try:
        path = run_job(job, progress=terminal.sampling, decode_progress=terminal.decoding)
    except KeyboardInterrupt:
        print(f"\nfinished segments are in {job.segment_folder}; run the same command again to resume.", file=sys.stderr)
        raise
    if path is not None:  # None: a helper process of a torchrun job (rank 0 writes the video)
        print(path)
    return 0
