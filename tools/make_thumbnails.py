"""Thumbnails for ComfyUI's template browser: `workflows/<title>.jpg`, a frame of each workflow's output.

    python tools/make_thumbnails.py [--steps 20]

The demo workflow's frame is its own output: the built-in demo model on the shipped example. The other workflows
need the official MTV models, which no test machine has; their frame is the built-in demo model's render of a
synthetic clip of the workflow's kind (a talking face, two people, a hopping object, a room whose colour follows
the music), and the picture says so in its corner.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIDTH = 384
# API workflow name -> the synthetic world's kind that shows what the workflow does
KIND = {"mtv_talking_character": "basic_face", "mtv_two_person_conversation": "multi_character",
        "mtv_sound_events": "sound_event", "mtv_music_mood": "visual_mood", "mtv_long_video": "single_character",
        "mtv_scene_transition": "single_character", "mtv_start_image_keyframe": "basic_face"}


def thumbnail(frame, label: str | None) -> Image.Image:
    image = Image.fromarray(frame.numpy())
    image = image.resize((WIDTH, round(WIDTH * image.height / image.width)), Image.BICUBIC)
    if label:
        draw = ImageDraw.Draw(image)
        box = draw.textbbox((0, 0), label)
        width, height = box[2] - box[0] + 8, box[3] - box[1] + 6
        draw.rectangle((0, image.height - height, width, image.height), fill=(0, 0, 0))
        draw.text((4, image.height - height + 2), label, fill=(230, 230, 230))
    return image


def main() -> None:
    from mtv_core import demo
    from mtv_core.pipeline.guidance import GuidanceScales
    from mtv_core.spec import STEMS
    from mtv_lab.evaluation.ablations import generate_from_stems, load_model_set, world_captions
    from mtv_lab.world import WorldSettings, write_world

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    models = load_model_set(demo.MODEL, demo.VAE, demo.T5, demo.WAV2VEC)
    titles = {json.loads(p.read_text())["extra"]["mtv_api"]: p.stem for p in (ROOT / "workflows").glob("*.json")}
    with tempfile.TemporaryDirectory() as world:
        specs = {spec.kind: spec for spec in write_world(world, WorldSettings(seed=3, clips=5, frames=60))}
        captions = world_captions(Path(world))
        for name, title in sorted(titles.items()):
            if name == "mtv_demo":
                stems, caption, label = demo.EXAMPLE_STEMS, demo.example_prompt(), None
            else:
                spec = specs[KIND[name]]
                stems = {stem: Path(world) / f"{spec.name}_{stem}.wav" for stem in STEMS}
                caption, label = captions[spec.name], "preview: built-in demo model"
            frames = generate_from_stems(models, stems, caption, steps=args.steps, seed=args.seed,
                                         guidance=GuidanceScales(**demo.GUIDANCE))
            path = ROOT / "workflows" / f"{title}.jpg"
            thumbnail(frames[len(frames) // 2], label).save(path, quality=90)
            print(f"wrote {path.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
