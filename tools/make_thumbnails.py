"""Thumbnails for ComfyUI's template browser: `workflows/<title>.jpg`, what each workflow's output shows.

    python tools/make_thumbnails.py [--steps 20] [--only mtv_scene_transition ...]

The demo workflow's frame is its own output: the built-in demo model on the shipped example. The other workflows
need the official MTV models, which no test machine has; their picture is the built-in demo model's render of a
synthetic clip of the workflow's kind (a talking face, two people, a hopping object, a room whose colour follows
the music), and the picture says so in its corner. A long video shows three moments of its clip, a scene transition
the scene before and after (the demo model has learnt no transitions: two renders), a start-image keyframe the
picture it starts from beside the video.

Each picture carries the workflow's one-line description (`extra.mtv_description`, from workflows/build.py): the
template browser shows a custom node's template with its title only (its subtitle repeats the title).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 384, 256
# API workflow name -> the synthetic world's kind that shows what the workflow does
KIND = {"mtv_talking_character": "basic_face", "mtv_two_person_conversation": "multi_character",
        "mtv_sound_events": "sound_event", "mtv_music_mood": "visual_mood", "mtv_long_video": "single_character",
        "mtv_scene_transition": "single_character"}
PREVIEW_LABEL = "preview: built-in demo model"
TRANSITION_TO = "basic_face"  # the scene transition's second scene: the same kind of talking person, in close-up


def render(models, stems: dict, prompt: str, steps: int, seed: int, start_image=None):
    """Frames (N, H, W, 3) uint8 from the demo model at the demo's guidance."""
    from mtv_core import demo
    from mtv_core.pipeline.generate import GenerationConfig, MemoryOptions
    from mtv_core.pipeline.guidance import GuidanceScales
    from mtv_core.pipeline.prompt_schedule import PromptSchedule
    from mtv_core.pipeline.session import RenderRequest, RenderSession
    from mtv_lab.evaluation.ablations import stem_features

    schedule = PromptSchedule.single(prompt)
    features, duration = stem_features(models, stems)
    request = RenderRequest(models.text_encoder.encode(schedule.prompts), schedule, features, duration, start_image)
    config = GenerationConfig(steps=steps, seed=seed, guidance=GuidanceScales(**demo.GUIDANCE))
    return RenderSession(models.model, models.vae, config, MemoryOptions(device="cpu")).frames(request)


def picture(name: str, renders: list, keyframe: Path) -> Image.Image:
    """What a workflow's output shows, WIDTH x HEIGHT, from its renders (two for a scene transition)."""
    frames = renders[0]
    if name == "mtv_long_video":  # three moments of the clip
        return _in_a_row([frames[len(frames) * k // 6] for k in (1, 3, 5)])
    if name == "mtv_scene_transition":  # the scene before, and after
        return _in_a_row([frames[len(frames) // 2], renders[1][len(renders[1]) // 2]])
    image = _image(frames[len(frames) // 2], (WIDTH, HEIGHT))
    if name == "mtv_start_image_keyframe":  # the picture it starts from, inset
        inset = Image.open(keyframe).convert("RGB").resize((WIDTH * 2 // 5, HEIGHT * 2 // 5), Image.BICUBIC)
        ImageDraw.Draw(image).rectangle((6, 6, inset.width + 13, inset.height + 13), fill=(240, 240, 240))
        image.paste(inset, (10, 10))
    return image


def _image(frame, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(frame.numpy()).resize(size, Image.BICUBIC)


def _in_a_row(frames: list, gap: int = 8) -> Image.Image:
    """Whole frames side by side on a dark ground, above the caption band."""
    width = (WIDTH - gap * (len(frames) + 1)) // len(frames)
    height = width * HEIGHT // WIDTH
    combined = Image.new("RGB", (WIDTH, HEIGHT), (24, 24, 28))
    top = max(gap, (HEIGHT - 70 - height) // 2)
    for index, frame in enumerate(frames):
        combined.paste(_image(frame, (width, height)), (gap + index * (width + gap), top))
    return combined


def captioned(image: Image.Image, description: str, label: str | None) -> Image.Image:
    """The description in a band along the bottom (two lines at most); the preview label in the top right."""
    image = image.convert("RGBA")
    band = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default(size=21)
    lines = _wrap(description, font, WIDTH - 24)
    top = HEIGHT - 12 - 25 * len(lines)
    draw.rectangle((0, top, WIDTH, HEIGHT), fill=(0, 0, 0, 170))
    for index, line in enumerate(lines):
        draw.text((WIDTH // 2, top + 6 + 25 * index), line, font=font, fill=(245, 245, 245, 255), anchor="mt")
    if label:
        small = ImageFont.load_default(size=13)
        width = int(draw.textlength(label, font=small)) + 10
        draw.rectangle((WIDTH - width, 0, WIDTH, 20), fill=(0, 0, 0, 170))
        draw.text((WIDTH - width + 5, 3), label, font=small, fill=(225, 225, 225, 255))
    return Image.alpha_composite(image, band).convert("RGB")


def _wrap(text: str, font, width: int) -> list[str]:
    lines = [""]
    for word in text.split():
        candidate = f"{lines[-1]} {word}".strip()
        if font.getlength(candidate) <= width or not lines[-1]:
            lines[-1] = candidate
        else:
            lines.append(word)
    if len(lines) > 2:
        raise SystemExit(f"description {text!r} takes {len(lines)} lines on a thumbnail; shorten it in workflows/build.py")
    return lines


def main() -> None:
    from mtv_core import demo
    from mtv_core.spec import STEMS
    from mtv_lab.evaluation.ablations import load_model_set, world_captions
    from mtv_lab.world import WorldSettings, write_world
    from nodes.comfy_adapter import EXAMPLE_INPUTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", help="an API workflow name (repeatable): render only these")
    args = parser.parse_args()

    models = load_model_set(demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC)
    workflows = {ui["extra"]["mtv_api"]: (path.stem, ui["extra"]["mtv_description"])
                 for path in (ROOT / "workflows").glob("*.json") for ui in [json.loads(path.read_text())]}
    unknown = set(args.only or ()) - set(workflows)
    if unknown:
        raise SystemExit(f"--only {sorted(unknown)}: no such workflow; choose from {sorted(workflows)}")
    keyframe = EXAMPLE_INPUTS / "mtv_keyframe.png"
    with tempfile.TemporaryDirectory() as world:
        specs = {spec.kind: spec for spec in write_world(world, WorldSettings(seed=3, clips=5, frames=60))}
        captions = world_captions(Path(world))
        for name, (title, description) in sorted(workflows.items()):
            if args.only and name not in args.only:
                continue
            if name in KIND:
                spec = specs[KIND[name]]
                stems = {stem: Path(world) / f"{spec.name}_{stem}.wav" for stem in STEMS}
                prompts = [captions[spec.name]]
            else:  # the demo, and the start-image keyframe, whose picture is the demo example's first frame
                stems, prompts = demo.EXAMPLE_STEMS, [demo.example_prompt()]
            if name == "mtv_scene_transition":
                prompts.append(captions[specs[TRANSITION_TO].name])
            start = keyframe if name == "mtv_start_image_keyframe" else None
            renders = [render(models, stems, prompt, args.steps, args.seed, start) for prompt in prompts]
            path = ROOT / "workflows" / f"{title}.jpg"
            label = None if name == "mtv_demo" else PREVIEW_LABEL
            captioned(picture(name, renders, keyframe), description, label).save(path, quality=90)
            print(f"wrote {path.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
