"""Fit a VAE's live-preview factors: the C x 3 matrix and bias that map its scaled latents to colours.

    python tools/fit_preview_factors.py --vae VAE --clips CLIP_OR_FOLDER ... [--held-out CLIP ...] --out FACTORS.json

Each clip (an mp4; a folder stands for its mp4s) is cut into 49-frame windows, encoded with the VAE and decoded
again; the decoded colours are averaged over each latent pixel's 8x8 pixels and 4 frames (the VAE's causal
grouping), and the factors are the least-squares fit from latents to those colours. The fit's error, the mean
absolute difference in 0..255 levels, is printed for the fitted clips and for held-out ones (default: the last
fifth of --clips). The file records a signature of the VAE, so the pack uses the factors for that VAE only.

The demo's factors (mtv_core/demo/vae_preview.json) come from clips of the synthetic world:
    python -m mtv_lab world --out /tmp/preview-world --clips 15 --seed 50 --frames 56
    python tools/fit_preview_factors.py --vae mtv_core/demo/vae.safetensors --clips /tmp/preview-world \
        --held-out mtv_core/demo/example/clip.mp4 mtv_core/demo/example_full_scene/clip.mp4 \
        --name mtv-demo --out mtv_core/demo/vae_preview.json
For the official VAE, fit on real videos (`--vae cogvideox5b_vae.safetensors --device cuda`) and write the result
over mtv_core/pipeline/cogvideox5b_preview.json to replace the factors shipped from the CogVideoX wrapper.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtv_core.checkpoints import load_vae  # noqa: E402
from mtv_core.pipeline.preview import (  # noqa: E402
    OFFICIAL_FACTORS,
    SIGNATURE_TENSOR,
    LatentPreview,
    colours_at_latent_resolution,
    level_error,
    vae_signature,
)
from mtv_core.pipeline.vae import SPATIAL_FACTOR, decode_latents, encode_frames  # noqa: E402
from mtv_core.spec import SEGMENT_FRAMES  # noqa: E402


def clip_files(sources: list[Path]) -> list[Path]:
    files = []
    for source in sources:
        found = sorted(source.glob("*.mp4")) if source.is_dir() else [source]
        if not found or not all(path.is_file() for path in found):
            raise SystemExit(f"--clips/--held-out {source}: no such mp4 file, nor a folder holding mp4 files")
        files += found
    return files


def windows(path: Path, frames: int):
    """The clip's whole `frames`-frame windows, (3, frames, H, W) in [-1, 1], cropped to multiples of 8 pixels."""
    with av.open(str(path)) as container:
        pictures = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    height, width = (size - size % SPATIAL_FACTOR for size in pictures.shape[1:3])
    video = torch.from_numpy(pictures[:, :height, :width]).permute(3, 0, 1, 2).float() / 127.5 - 1
    if video.shape[1] < frames:
        raise SystemExit(f"{path} has {video.shape[1]} frames; each window needs {frames}")
    return [video[:, start:start + frames] for start in range(0, video.shape[1] - frames + 1, frames)]


@torch.no_grad()
def latent_colour_pairs(vae, paths: list[Path], frames: int, seed: int):
    """(latents (N, C), colours (N, 3)) over every latent pixel of every window of the clips."""
    generator = torch.Generator("cpu").manual_seed(seed)
    latents, colours = [], []
    for path in paths:
        for window in windows(path, frames):
            encoded = encode_frames(vae, window[None], generator)[0]  # (T, C, h, w), scaled as the sampler holds it
            decoded = decode_latents(vae, encoded[None])[0]
            latents.append(encoded.permute(0, 2, 3, 1).reshape(-1, encoded.shape[1]))
            colours.append(colours_at_latent_resolution(decoded).reshape(-1, 3))
    return torch.cat(latents), torch.cat(colours)


def least_squares(latents: torch.Tensor, colours: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    design = torch.cat([latents, torch.ones(len(latents), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, colours.double()).solution.float()
    return solution[:-1], solution[-1]


def mean_error(preview: LatentPreview, pairs) -> float:
    latents, colours = pairs
    return level_error(latents @ preview.factors + preview.bias, colours)


def main() -> None:
    args = arguments()
    fit_paths, held_paths = split_clips(args)
    vae = load_vae(args.vae, device=args.device)
    fit = latent_colour_pairs(vae, fit_paths, args.frames, args.seed)
    held = latent_colour_pairs(vae, held_paths, args.frames, args.seed + 1)
    preview = LatentPreview(args.name or args.vae.stem, *least_squares(*fit))
    fitted_error, held_error = mean_error(preview, fit), mean_error(preview, held)
    print(f"fitted on {len(fit_paths)} clips ({len(fit[0])} latent pixels): mean absolute error {fitted_error:.2f} levels")
    print(f"held out {len(held_paths)} clips ({len(held[0])} latent pixels): mean absolute error {held_error:.2f} levels")
    print_baselines(preview, fit, held)
    write_factors(args.out, preview, vae, fit_paths, held_paths, fitted_error, held_error)
    print(f"wrote {args.out}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", type=Path, required=True, help="a CogVideoX VAE (.safetensors or diffusers folder)")
    parser.add_argument("--clips", type=Path, nargs="+", required=True, help="mp4 files or folders of them to fit on")
    parser.add_argument("--held-out", type=Path, nargs="+", help="clips to measure on (default: the last fifth of --clips)")
    parser.add_argument("--out", type=Path, required=True, help="the factors file to write (JSON)")
    parser.add_argument("--name", help="the factors' name (default: the VAE file's name)")
    parser.add_argument("--frames", type=int, default=SEGMENT_FRAMES, help="frames per window (1 + 4k)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="for the VAE's posterior samples")
    args = parser.parse_args()
    if args.frames < 1 or (args.frames - 1) % 4:
        raise SystemExit(f"--frames {args.frames} must be 1 + 4k (the VAE's temporal grouping), e.g. 49")
    return args


def split_clips(args) -> tuple[list[Path], list[Path]]:
    """(clips to fit on, clips to measure on): --held-out, or else the last fifth of --clips kept out of the fit."""
    clips = clip_files(args.clips)
    if args.held_out:
        return clips, clip_files(args.held_out)
    if len(clips) < 2:
        raise SystemExit("one clip cannot be both fitted and held out; give more --clips or --held-out CLIP")
    count = max(1, len(clips) // 5)
    return clips[:-count], clips[-count:]


def print_baselines(preview: LatentPreview, fit, held) -> None:
    """What the fit is worth: the held-out error of one mean colour, and of the official factors."""
    mean_colour = LatentPreview("mean colour", torch.zeros_like(preview.factors), fit[1].mean(0))
    line = f"  for comparison on the held-out clips: one mean colour {mean_error(mean_colour, held):.2f} levels"
    official = LatentPreview.load(OFFICIAL_FACTORS)
    if official.channels == preview.channels:
        line += f", the {official.name} factors {mean_error(official, held):.2f} levels"
    print(line)


def write_factors(out: Path, preview: LatentPreview, vae, fit_paths, held_paths, fitted_error, held_error) -> None:
    """One factor row a line, so a diff of a refit reads row by row."""
    head = {
        "name": preview.name,
        "source": ("fitted by tools/fit_preview_factors.py: least squares from scaled latents to the VAE's decoded "
                   f"colours at latent resolution, on {len(fit_paths)} clips: {', '.join(map(shown, fit_paths))}"),
        "mean_abs_error_levels": {"fitted": round(fitted_error, 2), "held_out": round(held_error, 2),
                                  "held_out_clips": [shown(path) for path in held_paths]},
        "vae_signature": {"tensor": SIGNATURE_TENSOR, "values": [round(v, 6) for v in vae_signature(vae).tolist()]},
    }
    rows = ",\n".join(f"  {json.dumps([round(v, 4) for v in row])}" for row in preview.factors.tolist())
    bias = json.dumps([round(v, 4) for v in preview.bias.tolist()])
    out.write_text(json.dumps(head, indent=1)[:-2] + f',\n "factors": [\n{rows}\n ],\n "bias": {bias}\n}}\n')


def shown(path: Path) -> str:
    """A clip's path relative to the repository when it is inside it, else its name."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path.name


if __name__ == "__main__":
    main()
