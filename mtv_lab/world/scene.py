"""What a synthetic clip shows, drawn with numpy: flat colours, big shapes, soft (anti-aliased) edges.

A `ClipSpec` holds everything the picture depends on (layout, colours, the per-frame speech envelope,
the effect onsets, the music mood) and is also the clip's ground truth. Coordinates are pixels,
boxes are (x0, y0, x1, y1) with x1/y1 exclusive.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from mtv_core.errors import ConfigError

KINDS = ("basic_face", "single_character", "multi_character", "sound_event", "visual_mood")
# Made only when asked for (`--kinds`): a speaking person, a hopping object and music in one room, all three
# streams at once. Not in the default cycle, so the worlds of a seed stay what they were.
FULL_SCENE = "full_scene"
ALL_KINDS = (*KINDS, FULL_SCENE)
SUBSETS = {  # what `trainer prepare` must find for each kind (music adds visual_mood: ClipSpec.subsets)
    "basic_face": ["basic_face", "single_character"],
    "single_character": ["single_character"],
    "multi_character": ["multi_character"],
    "sound_event": ["sound_event"],
    "visual_mood": ["visual_mood"],
    FULL_SCENE: ["single_character", "sound_event"],
}
OBJECT_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 70), "blue": (50, 90, 230), "yellow": (235, 215, 40)}
OBJECT_SHAPES = ("circle", "square", "triangle")
HAIR_COLOURS = {"black": (30, 25, 25), "brown": (110, 70, 35), "white": (235, 235, 235)}
BACKGROUNDS = {"neutral": (125, 125, 135), "major": (235, 150, 50), "minor": (35, 55, 125)}
SKIN, MOUTH, EYE = (240, 190, 160), (60, 20, 25), (30, 30, 40)
FLOOR = (85, 85, 90)
MIN_FRAMES = 56  # trainer prepare: a 49-frame window plus 3 spare frames on each side, and one more
HOP_FRAMES = 6  # frames the object stays up after an onset (a quarter second at 24 fps; 1.5 latent frames)
MIN_HEIGHT, MIN_WIDTH, SIZE_STEP = 48, 64, 8


@dataclass
class WorldSettings:
    seed: int = 0
    clips: int = 10
    frames: int = 72
    fps: float = 24.0
    height: int = 64
    width: int = 96
    kinds: tuple[str, ...] = KINDS  # clip i has kind kinds[i % len(kinds)]
    quiet_events: bool = False  # sound-event clips get a silent stretch, or (a quarter of them) no hit at all
    speech_pauses: bool = False  # speech stops for 1.5-4 s after every 3-8 s (long clips: mouths must rest)
    mood_change: bool = False  # music (and wall) switch to the other mood once, in the middle third of the clip

    def validate(self) -> "WorldSettings":
        checks = [
            (isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "use a whole number >= 0"),
            (isinstance(self.clips, int) and self.clips >= 1, "clips", self.clips, "ask for at least 1 clip (5 cover every subset)"),
            (isinstance(self.frames, int) and self.frames >= MIN_FRAMES, "frames", self.frames,
             f"use at least {MIN_FRAMES}: trainer prepare needs a 49-frame window with 3 spare frames on each side"),
            (0 < self.fps <= 120, "fps", self.fps, "use a frame rate in (0, 120], e.g. 24"),
            (self.height >= MIN_HEIGHT and self.height % SIZE_STEP == 0, "height", self.height,
             f"use a multiple of {SIZE_STEP} of at least {MIN_HEIGHT} (the VAE downsamples by 8), e.g. 64"),
            (self.width >= MIN_WIDTH and self.width % SIZE_STEP == 0, "width", self.width,
             f"use a multiple of {SIZE_STEP} of at least {MIN_WIDTH}, e.g. 96"),
            (len(self.kinds) > 0 and set(self.kinds) <= set(ALL_KINDS), "kinds", self.kinds,
             f"choose from {', '.join(ALL_KINDS)}"),
        ]
        for ok, what, value, fix in checks:
            if not ok:
                raise ConfigError(f"world {what} {value!r} cannot make a valid clip; {fix}")
        return self


@dataclass
class Person:
    centre: tuple[float, float]  # head centre (x, y)
    radii: tuple[float, float]  # head (rx, ry)
    hair: str
    shirt: str | None  # None: a face close-up without a body
    mouth_box: tuple[int, int, int, int]  # the fully open mouth, plus one pixel of margin
    speaking: bool

    @property
    def mouth_centre(self) -> tuple[float, float]:
        return self.centre[0], self.centre[1] + 0.45 * self.radii[1]

    @property
    def mouth_half_size(self) -> tuple[float, float]:
        """(half width, largest half height)."""
        return 0.38 * self.radii[0], (0.22 if self.shirt is None else 0.28) * self.radii[1]


@dataclass
class SceneObject:
    shape: str
    colour: str
    box: tuple[int, int, int, int]  # at rest
    jump: float  # pixels it rises at an onset, for HOP_FRAMES frames


@dataclass
class ClipSpec:
    name: str
    kind: str
    frames: int
    fps: float
    height: int
    width: int
    sample_rate: int
    caption: str
    persons: list[Person]
    speaker: int | None  # 1-based, who speaks
    object: SceneObject | None
    mood: str | None  # "major" (warm background) or "minor" (cool background); None: neutral
    background_boxes: list[tuple[int, int, int, int]]
    speech_envelope: list[float] = field(default_factory=list)  # per frame, 0..1
    effect_onsets: list[int] = field(default_factory=list)
    caption_fields: dict = field(default_factory=dict)
    # {"frame": F, "mood": M}: from frame F on (a hard cut of the wall; the chord crossfades over 50 ms around it)
    # the music and the wall have mood M, before it `mood`. None: one mood throughout (and in truth JSON without it).
    mood_change: dict | None = None

    @property
    def face_closeup(self) -> bool:
        return self.kind == "basic_face"

    @property
    def subsets(self) -> list[str]:
        """What `trainer prepare` finds: the kind's subsets, plus visual_mood wherever music plays."""
        own = SUBSETS[self.kind]
        return own + ["visual_mood"] if self.mood and "visual_mood" not in own else own


def mood_spans(spec: ClipSpec) -> list[tuple[int, int, str | None]]:
    """(start, end, mood) of each stretch of frames with one mood, in order: one, or two where the music changes."""
    if not spec.mood_change:
        return [(0, spec.frames, spec.mood)]
    cut = spec.mood_change["frame"]
    return [(0, cut, spec.mood), (cut, spec.frames, spec.mood_change["mood"])]


# -- layout ----------------------------------------------------------------------------------------
def mouth_box(centre: tuple[float, float], radii: tuple[float, float], closeup: bool) -> tuple[int, int, int, int]:
    probe = Person(centre, radii, "black", None if closeup else "red", (0, 0, 0, 0), False)
    (x, y), (half_width, half_height) = probe.mouth_centre, probe.mouth_half_size
    return int(x - half_width) - 1, int(y - half_height) - 1, int(np.ceil(x + half_width)) + 2, int(np.ceil(y + half_height)) + 2


def make_person(centre, radii, hair: str, shirt: str | None, speaking: bool) -> Person:
    return Person(centre, radii, hair, shirt, mouth_box(centre, radii, shirt is None), speaking)


def closeup_person(height: int, width: int, hair: str) -> Person:
    return make_person((width / 2, 0.55 * height), (0.3 * width, 0.45 * height), hair, None, True)


def small_person(height: int, x: float, hair: str, shirt: str, speaking: bool) -> Person:
    radius = 0.17 * height
    return make_person((x, 0.42 * height), (radius, radius), hair, shirt, speaking)


def object_at(height: int, x: float, shape: str, colour: str) -> SceneObject:
    size, floor = round(0.32 * height), floor_line(height)
    left = int(round(x - size / 2))
    return SceneObject(shape, colour, (left, floor - size, left + size, floor), 0.25 * height)


def floor_line(height: int) -> int:
    return round(0.8 * height)


def background_boxes(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """The two top corners: only the background shows there, in every kind of clip."""
    box_h, box_w = round(0.15 * height), round(0.15 * width)
    return [(0, 0, box_w, box_h), (width - box_w, 0, width, box_h)]


# -- drawing ---------------------------------------------------------------------------------------
class Canvas:
    """A float RGB image with anti-aliased shape painting (coverage from the signed distance to the edge)."""

    def __init__(self, height: int, width: int, colour):
        self.image = np.empty((height, width, 3), np.float32)
        self.image[:] = colour
        self.y, self.x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5

    def copy(self) -> "Canvas":
        twin = object.__new__(Canvas)
        twin.image, twin.y, twin.x = self.image.copy(), self.y, self.x
        return twin

    def paint(self, coverage: np.ndarray, colour) -> None:
        coverage = np.clip(coverage, 0, 1)[..., None]
        self.image = self.image * (1 - coverage) + np.asarray(colour, np.float32) * coverage

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        distance = np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
        return (1 - distance) * min(rx, ry) + 0.5

    def box(self, x0, y0, x1, y1) -> np.ndarray:
        return np.minimum.reduce([self.x - x0, x1 - self.x, self.y - y0, y1 - self.y]) + 0.5

    def triangle(self, x0, y0, x1, y1) -> np.ndarray:
        """Apex at the top centre, base along the bottom edge."""
        half, height = (x1 - x0) / 2, y1 - y0
        slope = half / height
        inside_sides = ((self.y - y0) * slope - np.abs(self.x - (x0 + half))) / np.hypot(1, slope)
        return np.minimum(inside_sides, y1 - self.y) + 0.5

    def shape(self, shape: str, box) -> np.ndarray:
        x0, y0, x1, y1 = box
        if shape == "circle":
            return self.ellipse((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)
        return self.box(x0, y0, x1, y1) if shape == "square" else self.triangle(x0, y0, x1, y1)

    def uint8(self) -> np.ndarray:
        return np.clip(np.round(self.image), 0, 255).astype(np.uint8)


def shape_mask(shape: str, box, height: int, width: int) -> np.ndarray:
    """Boolean mask of a shape drawn in box, for comparing measured masks with the candidates."""
    return np.clip(Canvas(height, width, 0).shape(shape, box), 0, 1) >= 0.5


def static_canvas(spec: ClipSpec) -> Canvas:
    """Background, floor and people without their mouths: what no sound changes."""
    canvas = Canvas(spec.height, spec.width, BACKGROUNDS[spec.mood or "neutral"])
    if not spec.face_closeup:
        floor = np.asarray(BACKGROUNDS[spec.mood], np.float32) * 0.6 if spec.mood else FLOOR
        canvas.paint(canvas.box(-1, floor_line(spec.height), spec.width + 1, spec.height + 1), floor)
    for person in spec.persons:
        draw_person(canvas, person)
    return canvas


def draw_person(canvas: Canvas, person: Person) -> None:
    (cx, cy), (rx, ry) = person.centre, person.radii
    if person.shirt:
        canvas.paint(canvas.box(cx - 1.2 * rx, cy + 0.9 * ry, cx + 1.2 * rx, canvas.image.shape[0] + 1), OBJECT_COLOURS[person.shirt])
    head = canvas.ellipse(cx, cy, rx, ry)
    canvas.paint(head, SKIN)
    canvas.paint(np.minimum(head, cy - 0.45 * ry - canvas.y + 0.5), HAIR_COLOURS[person.hair])
    for side in (-1, 1):
        canvas.paint(canvas.ellipse(cx + side * 0.38 * rx, cy - 0.15 * ry, 0.11 * ry, 0.11 * ry), EYE)


def lifted(onsets: list[int], frames: int) -> np.ndarray:
    """Per frame: whether the object is in the air. It jumps at each onset and lands HOP_FRAMES later, so
    whether it is up depends only on the last quarter second of sound, not on every sound before."""
    up = np.zeros(frames, bool)
    for onset in onsets:
        up[onset:onset + HOP_FRAMES] = True
    return up


def mouth_heights(spec: ClipSpec, person: Person) -> np.ndarray:
    """Half height of the mouth per frame: a thin closed line plus the speech envelope when speaking."""
    closed, largest = 0.6, person.mouth_half_size[1]
    envelope = np.asarray(spec.speech_envelope) if person.speaking else np.zeros(spec.frames)
    return closed + envelope * (largest - closed)


def draw_frames(spec: ClipSpec) -> np.ndarray:
    """All frames, (frames, height, width, 3) uint8."""
    bases = [None] * spec.frames  # per frame: the static canvas of its mood's stretch
    for start, end, mood in mood_spans(spec):
        bases[start:end] = [static_canvas(replace(spec, mood=mood))] * (end - start)
    up = lifted(spec.effect_onsets, spec.frames)
    mouths = [mouth_heights(spec, person) for person in spec.persons]
    frames = np.empty((spec.frames, spec.height, spec.width, 3), np.uint8)
    for index in range(spec.frames):
        canvas = bases[index].copy()
        for person, heights in zip(spec.persons, mouths):
            (mx, my), (half_width, _) = person.mouth_centre, person.mouth_half_size
            canvas.paint(canvas.ellipse(mx, my, half_width, heights[index]), MOUTH)
        if spec.object:
            draw_object(canvas, spec.object, up[index])
        frames[index] = canvas.uint8()
    return frames


def draw_object(canvas: Canvas, thing: SceneObject, up: bool) -> None:
    """The object, raised by its jump height while up."""
    x0, y0, x1, y1 = thing.box
    lift = thing.jump if up else 0.0
    canvas.paint(canvas.shape(thing.shape, (x0, y0 - lift, x1, y1 - lift)), OBJECT_COLOURS[thing.colour])
