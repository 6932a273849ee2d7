"""Write a synthetic world: per clip an mp4 (H.264 + AAC mix), three stem WAVs, a ground-truth JSON,
and one `captions.csv` for all clips, laid out as `python -m trainer prepare --clips DIR` reads user clips.

Clip i has kind kinds[i % len(kinds)] (the five subsets by default) and draws everything else from numpy's
Generator seeded with (seed, i), so a clip does not depend on how many clips are made.
"""

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mtv_core.audio.io import Waveform, save_wav
from mtv_core.errors import ConfigError
from mtv_core.pipeline.captions import build_caption
from mtv_core.pipeline.video import write_mp4
from mtv_core.spec import EFFECTS, MUSIC, SPEECH, STEMS

from . import sounds
from .scene import (
    FULL_SCENE,
    HAIR_COLOURS,
    OBJECT_COLOURS,
    OBJECT_SHAPES,
    ClipSpec,
    Person,
    SceneObject,
    WorldSettings,
    background_boxes,
    closeup_person,
    draw_frames,
    lifted,
    mouth_heights,
    object_at,
    small_person,
)

CAPTIONS = "captions.csv"
MOOD_CHANGE_STREAM = 1  # the mood change's generator is seeded with (seed, index, MOOD_CHANGE_STREAM)
WORLD = "world.json"
CAPTION_COLUMNS = ["clip", "caption", "persons", "face_closeup", "conversation", "person1", "person2", "speaker", "scene"]


def clip_name(index: int, kind: str) -> str:
    return f"{index:03d}_{kind}"


# -- one clip --------------------------------------------------------------------------------------
def _choice(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _people(kind: str, rng: np.random.Generator, settings: WorldSettings) -> tuple[list[Person], dict]:
    """The persons of a clip and the caption fields that describe them."""
    height, width = settings.height, settings.width
    hairs, shirts = list(HAIR_COLOURS), list(OBJECT_COLOURS)
    if kind == "basic_face":
        hair = _choice(rng, hairs)
        return [closeup_person(height, width, hair)], {
            "conversation": "one", "person1": f"A person with {hair} hair, seen in a close-up",
            "scene": "A close-up of a face in front of a plain wall."}
    if kind == "single_character":
        hair, shirt, side = _choice(rng, hairs), _choice(rng, shirts), _choice(rng, ("left", "right"))
        x = width * (0.3 if side == "left" else 0.7)
        return [small_person(height, x, hair, shirt, True)], {
            "conversation": "one", "person1": f"A small person with {hair} hair and a {shirt} shirt stands on the {side}",
            "scene": "One person stands in an empty room."}
    if kind == FULL_SCENE:  # the person on the left, the object (see _object) on the right
        hair, shirt = _choice(rng, hairs), _choice(rng, shirts)
        return [small_person(height, width * 0.25, hair, shirt, True)], {
            "conversation": "one", "person1": f"A small person with {hair} hair and a {shirt} shirt stands on the left"}
    if kind == "multi_character":
        speaker = int(rng.integers(1, 3))
        looks = [(_choice(rng, hairs), _choice(rng, shirts)) for _ in range(2)]
        people = [small_person(height, width * x, hair, shirt, number == speaker)
                  for number, (x, (hair, shirt)) in enumerate(zip((0.27, 0.73), looks), 1)]
        fields = {f"person{number}": f"A person with {hair} hair and a {shirt} shirt stands on the {side}"
                  for number, side, (hair, shirt) in zip((1, 2), ("left", "right"), looks)}
        return people, {"conversation": "two", **fields, "speaker": speaker,
                        "scene": "Two people stand side by side in an empty room."}
    return [], {}


def _object(kind: str, rng: np.random.Generator, settings: WorldSettings) -> tuple[SceneObject | None, dict]:
    if kind not in ("sound_event", FULL_SCENE):
        return None, {}
    shape, colour = _choice(rng, OBJECT_SHAPES), _choice(rng, list(OBJECT_COLOURS))
    if kind == FULL_SCENE:
        x = settings.width * rng.uniform(0.62, 0.78)
        scene = f"One person stands in a room whose wall colour follows the music; a {colour} {shape} hops at every sound."
        return object_at(settings.height, x, shape, colour), {"scene": scene}
    x = settings.width * rng.uniform(0.25, 0.75)
    scene = f"A {colour} {shape} stands on the dark floor of an empty grey room; it hops at every sound."
    return object_at(settings.height, x, shape, colour), {"conversation": "none", "scene": scene}


def _mood_change(settings: WorldSettings, index: int, mood: str, onsets: list[int], music: np.ndarray) -> tuple[dict, np.ndarray]:
    """The clip's change to the other mood (ClipSpec.mood_change) and the music that makes it. The frame is drawn from
    the middle third, where no hop starts or lands: the wall's cut must not pass for, or hide, a hop of the object."""
    rng = np.random.default_rng([settings.seed, index, MOOD_CHANGE_STREAM])
    frames, up = settings.frames, lifted(onsets, settings.frames)
    middle = range(frames // 3, 2 * frames // 3)
    candidates = [frame for frame in middle if up[frame - 1] == up[frame]] or list(middle)
    frame = int(candidates[int(rng.integers(len(candidates)))])
    second = "minor" if mood == "major" else "major"
    return {"frame": frame, "mood": second}, sounds.changed_music(rng, music, second, frame, frames, settings.fps)


def make_clip(index: int, settings: WorldSettings) -> tuple[ClipSpec, dict[str, np.ndarray]]:
    """The clip's spec (its ground truth) and its three mono stems at sounds.SAMPLE_RATE."""
    kind = settings.kinds[index % len(settings.kinds)]
    rng = np.random.default_rng([settings.seed, index])
    frames, fps = settings.frames, settings.fps
    persons, fields = _people(kind, rng, settings)
    thing, object_fields = _object(kind, rng, settings)
    fields = {**fields, **object_fields} or {"conversation": "none", "scene": "An empty room whose wall colour follows the music."}
    # Music plays (and sets the wall's mood) in every clip but the sound-event ones, whose neutral room keeps the
    # object's colour easy to read; a pathway that only ever hears silence learns to ignore its input.
    mood = None if kind == "sound_event" else _choice(rng, ("major", "minor"))
    stems = {name: sounds.silence(frames, fps) for name in STEMS}
    envelope, onsets = np.zeros(frames), []
    if persons:
        stems[SPEECH], envelope = sounds.speech(rng, frames, fps)
    if thing:
        onsets = sounds.effect_onsets(rng, frames)
        if settings.quiet_events and kind == "sound_event":
            onsets = sounds.with_quiet_stretch(rng, onsets, frames)
        stems[EFFECTS] = sounds.effects(rng, onsets, frames, fps)
    if mood:
        stems[MUSIC] = sounds.music(rng, mood, frames, fps)
    if persons and settings.speech_pauses:  # drawn last: the other sounds stay as without pauses
        stems[SPEECH], envelope = sounds.with_pauses(rng, stems[SPEECH], envelope, fps)
    change = None
    if mood and settings.mood_change:  # drawn from a generator of its own: the rest of the clip stays as without it
        change, stems[MUSIC] = _mood_change(settings, index, mood, onsets, stems[MUSIC])
    caption = build_caption(fields["conversation"], fields["scene"], fields.get("person1"), fields.get("person2"), fields.get("speaker", 1))
    spec = ClipSpec(
        name=clip_name(index, kind), kind=kind, frames=frames, fps=fps, height=settings.height, width=settings.width,
        sample_rate=sounds.SAMPLE_RATE, caption=caption, persons=persons, speaker=fields.get("speaker", 1 if persons else None),
        object=thing, mood=mood, background_boxes=background_boxes(settings.height, settings.width),
        speech_envelope=[round(float(value), 5) for value in envelope], effect_onsets=onsets, caption_fields=fields,
        mood_change=change,
    )
    return spec, stems


# -- ground truth as JSON --------------------------------------------------------------------------
def truth_dict(spec: ClipSpec) -> dict:
    return {**asdict(spec), "subsets": spec.subsets, "face_closeup": spec.face_closeup,
            "mouth_opening": [mouth_opening(spec, index) for index in range(len(spec.persons))]}


def mouth_opening(spec: ClipSpec, person_index: int) -> list[float]:
    """Drawn mouth height in pixels per frame (the ground truth the measured opening is compared with)."""
    return [round(2 * float(value), 4) for value in mouth_heights(spec, spec.persons[person_index])]


def spec_from_dict(data: dict) -> ClipSpec:
    """The inverse of truth_dict (derived entries are ignored)."""
    names = set(ClipSpec.__dataclass_fields__)
    values = {key: value for key, value in data.items() if key in names}
    values["persons"] = [Person(**{**p, "centre": tuple(p["centre"]), "radii": tuple(p["radii"]), "mouth_box": tuple(p["mouth_box"])})
                         for p in data["persons"]]
    values["object"] = SceneObject(**{**data["object"], "box": tuple(data["object"]["box"])}) if data.get("object") else None
    values["background_boxes"] = [tuple(box) for box in data["background_boxes"]]
    return ClipSpec(**values)


def load_truth(path) -> ClipSpec:
    return spec_from_dict(json.loads(Path(path).read_text()))


# -- files -----------------------------------------------------------------------------------------
def mix(stems: dict[str, np.ndarray]) -> np.ndarray:
    return np.clip(sum(stems.values()), -1, 1).astype(np.float32)


def write_clip(folder: Path, spec: ClipSpec, stems: dict[str, np.ndarray]) -> Path:
    video = folder / f"{spec.name}.mp4"
    for name, samples in stems.items():
        save_wav(folder / f"{spec.name}_{name}.wav", Waveform(torch.from_numpy(samples)[None], spec.sample_rate))
    write_mp4(video, torch.from_numpy(draw_frames(spec)), spec.fps, torch.from_numpy(mix(stems))[None], spec.sample_rate)
    (folder / f"{spec.name}.json").write_text(json.dumps(truth_dict(spec), indent=1))
    return video


def caption_row(spec: ClipSpec) -> dict:
    fields = spec.caption_fields
    return {"clip": f"{spec.name}.mp4", "caption": spec.caption, "persons": len(spec.persons),
            "face_closeup": str(spec.face_closeup).lower(), "conversation": fields["conversation"],
            "person1": fields.get("person1", ""), "person2": fields.get("person2", ""),
            "speaker": spec.speaker or "", "scene": fields["scene"]}


def write_world(out, settings: WorldSettings, progress=None) -> list[ClipSpec]:
    """Write settings.clips clips into `out` (created if needed); returns their specs."""
    settings.validate()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for index in range(settings.clips):
        spec, stems = make_clip(index, settings)
        write_clip(folder, spec, stems)
        specs.append(spec)
        if progress:
            progress(spec)
    with open(folder / CAPTIONS, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CAPTION_COLUMNS)
        writer.writeheader()
        writer.writerows(caption_row(spec) for spec in specs)
    (folder / WORLD).write_text(json.dumps({**asdict(settings), "clip_names": [spec.name for spec in specs]}, indent=1))
    return specs


def world_clips(folder) -> list[ClipSpec]:
    """The ground truth of every clip of a world folder, in order."""
    index = Path(folder) / WORLD
    if not index.is_file():
        raise ConfigError(f"{str(folder)!r} is not a world folder (no {WORLD}); make one with `python -m mtv_lab world --out {folder}`")
    names = json.loads(index.read_text())["clip_names"]
    return [load_truth(Path(folder) / f"{name}.json") for name in names]
