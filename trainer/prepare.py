"""`python -m trainer prepare`: video clips -> single-shot 49-frame windows, stems, wav2vec2
features, captions, subset membership, optional VAE latents and T5 embeddings, and a manifest.

Idempotent: a source whose content hash and outputs are unchanged is reused, not recomputed. A clip
that cannot be used (no audio, too short, corrupt, no caption) is skipped and listed in report.json.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import av
import torch

from mtv_core.audio import (
    encode_stems,
    is_silent,
    load_audio,
    probe_audio,
    stems_from_files,
)
from mtv_core.audio.diarize import diarize, require_speaker_models
from mtv_core.audio.levels import DEFAULT_SILENCE_DBFS
from mtv_core.audio.speakers import add_second_speaker, format_speaker_ranges, is_auto, parse_speaker_ranges, split_speakers
from mtv_core.checkpoints import load_demixer, load_text_encoder, load_vae, load_wav2vec2
from mtv_core.errors import MTVError
from mtv_core.fileio import atomic_write, file_sha256
from mtv_core.pipeline.captions import build_caption
from mtv_core.pipeline.keyframes import resize_and_crop
from mtv_core.pipeline.vae import encode_frames
from mtv_core.spec import EFFECTS, MUSIC, SPEECH, SPEECH2, SPEECH_GATE_DBFS, STEMS

from .dataset import CLIP_FRAMES, MANIFEST, ClipRecord, read_manifest, save_tensors, text_cache_name, write_manifest
from .errors import TrainerError
from .scenes import detect_scenes

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
STEM_SUFFIXES = {name: f"_{name}.wav" for name in STEMS}
SPEECH2_SUFFIX = f"_{SPEECH2}.wav"
EDGE_FRAMES = 3  # the +-2 feature window must stay inside the shot (official: start in [3, len - 49 - 3])
REPORT = "report.json"


class SkipClip(Exception):
    """This clip cannot be used; the message is the reason written to the report."""
@dataclass
class PrepareOptions:
    clips: Path
    out: Path
    wav2vec: Path
    captions: Path | None = None
    demixer: list[Path] | None = None
    vae: Path | None = None
    t5: Path | None = None
    size: tuple[int, int] = (480, 720)
    scene_threshold: float = 0.35
    device: str = "cpu"

    def __post_init__(self):
        height, width = self.size
        if not all(isinstance(v, int) and v > 0 and v % 16 == 0 for v in (height, width)):
            raise TrainerError(f"--size {height} {width} is not two positive multiples of 16 (the VAE and patch grid "
                               "need them); use e.g. --size 480 720")
        if not 0 < self.scene_threshold < 1:
            raise TrainerError(f"--scene-threshold {self.scene_threshold} is outside (0, 1); use e.g. 0.35")


@dataclass
class PrepareReport:
    clips: int = 0
    windows: int = 0
    reused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    uncaptioned_entries: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.clips} clips -> {self.windows} training windows ({len(self.reused)} clips reused)"]
        lines += [f"skipped {name}: {reason}" for name, reason in self.skipped.items()]
        if self.uncaptioned_entries:
            lines.append(f"caption entries without a clip: {', '.join(self.uncaptioned_entries[:10])}")
        return "\n".join(lines)


@dataclass
class ClipInfo:
    """What the captions file says about one clip."""
    caption: str
    persons: int
    face_closeup: bool | None = None
    fields: dict = field(default_factory=dict)
    speaker_ranges: str = ""  # who speaks when, in one speech track: "0-2.5:1, 2.5-5:2" (seconds:speaker), or "auto"


# -- captions ------------------------------------------------------------------------------------
def read_captions(path: Path) -> dict[str, ClipInfo]:
    """CSV (header row) or JSONL rows keyed by clip file name ("clip", "file" or "path" column)."""
    if not path.is_file():
        raise TrainerError(f"captions file {str(path)!r} does not exist; pass a CSV or JSONL file")
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            rows = list(csv.DictReader(path.read_text().splitlines()))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as error:
        raise TrainerError(f"captions file {str(path)!r} is not valid CSV/JSONL ({error})") from error
    captions = {}
    for number, row in enumerate(rows, 1):
        name = next((str(row[key]) for key in ("clip", "file", "path") if row.get(key)), None)
        if name is None:
            raise TrainerError(f"{path}: row {number} names no clip; give each row a 'clip' (file name) column")
        captions[Path(name).name] = clip_info(row, f"{path} row {number}")
    return captions


def clip_info(row: dict, where: str) -> ClipInfo:
    caption = (row.get("caption") or "").strip()
    if not caption and row.get("scene"):
        persons = _int(row.get("persons"), where)
        conversation = row.get("conversation") or {0: "none", 1: "one"}.get(persons or 0, "two")
        try:
            caption = build_caption(conversation, row["scene"], row.get("person1"), row.get("person2"), int(row.get("speaker") or 1))
        except MTVError as error:
            raise TrainerError(f"{where}: {error}") from error
    if not caption:
        raise TrainerError(f"{where}: no caption; give a 'caption' column, or 'scene' with 'conversation'/'person1'/'person2'")
    persons = _int(row.get("persons"), where)
    structured = {key: row[key] for key in ("conversation", "person1", "person2", "speaker", "scene") if row.get(key)}
    ranges = str(row.get("speaker_ranges") or "").strip()
    if ranges:
        try:
            if is_auto(ranges):
                require_speaker_models()  # "auto": found in the speech when the clip is prepared
            else:
                parse_speaker_ranges(ranges)
        except MTVError as error:
            raise TrainerError(f"{where}: speaker_ranges: {error}") from None
    return ClipInfo(caption, persons if persons is not None else persons_in_caption(caption), _flag(row.get("face_closeup")),
                    structured, ranges)


def persons_in_caption(caption: str) -> int:
    """People count from the structured MTV caption."""
    if caption.startswith("Two person conversation"):
        return 2
    if caption.startswith("One person conversation"):
        return 1
    return len(set(re.findall(r"Person(\d+):", caption)))


def _int(value, where: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise TrainerError(f"{where}: persons {value!r} is not a whole number") from error


def _flag(value) -> bool | None:
    if value in (None, ""):
        return None
    return str(value).strip().lower() in ("1", "true", "yes", "y")


# -- subsets -------------------------------------------------------------------------------------
def assign_subsets(info: ClipInfo, effects_audible: bool, music_audible: bool) -> list[str]:
    """The overlapping DEMIX subsets a window belongs to."""
    subsets = []
    if info.persons == 1 and info.face_closeup is not False:
        subsets.append("basic_face")
    if info.persons == 1:
        subsets.append("single_character")
    if info.persons >= 2:
        subsets.append("multi_character")
    if effects_audible:
        subsets.append("sound_event")
    if music_audible:
        subsets.append("visual_mood")
    return subsets


def audible(stems, name: str, start: int, fps: float) -> bool:
    if name not in stems.streams or name in stems.flags:
        return False
    first = int(start / fps * stems.sample_rate)
    last = int((start + CLIP_FRAMES) / fps * stems.sample_rate)
    return not is_silent(stems.streams[name][..., first:last], stems.sample_rate, DEFAULT_SILENCE_DBFS)


# -- windows -------------------------------------------------------------------------------------
def window_starts(scene: tuple[int, int]) -> list[int]:
    """Non-overlapping 49-frame windows inside a shot, each with 3 spare frames on either side."""
    start, end = scene
    return list(range(start + EDGE_FRAMES, end - CLIP_FRAMES - EDGE_FRAMES + 1, CLIP_FRAMES))


def read_window(path: Path, start: int, size: tuple[int, int]) -> torch.Tensor:
    """Frames [start, start + 49) resized and centre-cropped to size as a start image is: (1, 3, 49, H, W) in [-1, 1]."""
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= start + CLIP_FRAMES:
                break
            if index >= start:
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
    video = torch.stack(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    return resize_and_crop(video, *size).clamp(-1, 1).permute(1, 0, 2, 3)[None]


# -- the pass over all clips ---------------------------------------------------------------------
def find_videos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise TrainerError(f"--clips {str(folder)!r} is not a folder; pass the folder holding the video clips")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise TrainerError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {str(folder)!r}; put the clips there or fix --clips")
    return videos


def file_hash(path: Path) -> str:
    return file_sha256(path)[:16]


def check_captions_match(captions: dict, videos: list[Path], path: Path) -> None:
    names = {video.name for video in videos}
    if captions and not names & set(captions):
        raise TrainerError(
            f"none of the {len(captions)} entries of {str(path)!r} names a clip (e.g. {sorted(captions)[0]!r}; "
            f"clips are e.g. {sorted(names)[0]!r}); the 'clip' column must hold the video file name"
        )


def found_speakers(video: Path, stems) -> str:
    """The speaker ranges `diarize` finds in the clip's speech stem (for "auto"), printed so that they can be copied
    into the captions file and corrected; without a second voice all is speaker 1's (speech2 is silence)."""
    found = diarize(stems.waveform(SPEECH))
    print(f"{video.name}: speakers: {found.summary()}", file=sys.stderr)
    if found.voices:
        print(f"{video.name}: to correct them, write '{found.text}' instead of auto in its speaker_ranges", file=sys.stderr)
    return found.text or format_speaker_ranges([(0.0, max(found.duration, 0.01), 1)])


def second_speaker(video: Path, info: ClipInfo) -> str:
    """What speaker 2 comes from, as a key that changes when it does: the hash of `<clip>_speech2.wav`, a digest of
    the captions' speaker ranges (for "auto", of the ranges found, so that other ranges are never taken from the
    cache), or "" (no second speaker)."""
    path = video.with_name(video.stem + SPEECH2_SUFFIX)
    if path.is_file():
        return file_hash(path)
    return hashlib.sha256(info.speaker_ranges.encode()).hexdigest()[:16] if info.speaker_ranges else ""


def with_second_speaker(stems, video: Path, info: ClipInfo):
    """speech2 from `<clip>_speech2.wav`, else the speech inside the captions' speaker-2 ranges."""
    path = video.with_name(video.stem + SPEECH2_SUFFIX)
    try:
        if path.is_file():
            return add_second_speaker(stems, path)
        return split_speakers(stems, info.speaker_ranges) if info.speaker_ranges else stems
    except MTVError as error:
        raise SkipClip(f"second speaker: {error}") from error


class Preparer:
    def __init__(self, options: PrepareOptions):
        self.options = options
        self.out = Path(options.out)
        self.encoder = load_wav2vec2(options.wav2vec, device=options.device)
        self._demixer = self._vae = self._t5 = self._demixer_hash = None

    def clip_records(self, video: Path, info: ClipInfo, previous: list[ClipRecord]) -> tuple[list[ClipRecord], bool]:
        """The clip's windows, and whether they were reused from the previous run."""
        source_hash, stems = file_hash(video), None
        if is_auto(info.speaker_ranges) and not video.with_name(video.stem + SPEECH2_SUFFIX).is_file():
            # found on every run, so the cache key is the ranges used (costs a demix when the stems are not files)
            stems = self._stems(video)
            info = replace(info, speaker_ranges=found_speakers(video, stems))
        second, origin = second_speaker(video, info), self._stems_origin(video)
        reused = [r for r in previous if r.source == str(video) and r.source_hash == source_hash
                  and r.caption == info.caption and r.fields.get("second_speaker") == second
                  and r.fields.get("stems") == origin and (self.out / r.features).is_file()]
        records = reused or self._new_records(video, info, source_hash, second, origin, stems)
        for record in records:
            self._encode_missing(video, record)
        return records, bool(reused)

    def _stems_origin(self, video: Path) -> str:
        """Where the clip's stems come from: its stem files (by content), or the demixer (by content) and the speech
        gate. A clip prepared from other stems, or before the gate (no origin in its record), is prepared again."""
        files = self._stem_files(video)
        if files:
            return "files " + " ".join(f"{name}:{file_hash(path)}" for name, path in sorted(files.items()))
        if self._demixer_hash is None:
            self._demixer_hash = "+".join(file_hash(Path(path)) for path in self.options.demixer or ())
        return f"demixer {self._demixer_hash} speech gate {SPEECH_GATE_DBFS:g} dBFS"

    def _new_records(self, video: Path, info: ClipInfo, source_hash: str, second: str, origin: str,
                     stems=None) -> list[ClipRecord]:
        try:
            scenes, fps, num_frames = detect_scenes(video, self.options.scene_threshold)
        except (av.FFmpegError, ValueError, OSError) as error:
            raise SkipClip(f"unreadable video ({error})") from error
        windows = [(scene, start) for scene in scenes for start in window_starts(scene)]
        if not windows:
            longest = max((end - start for start, end in scenes), default=0)
            raise SkipClip(f"too short: longest shot {longest} frames, a window needs {CLIP_FRAMES + 2 * EDGE_FRAMES + 1}")
        stems = with_second_speaker(self._stems(video) if stems is None else stems, video, info)
        features = encode_stems(stems, self.encoder, fps=fps, clip_length=CLIP_FRAMES)
        features_path = f"features/{source_hash}{'-' + second[:12] if second else ''}.safetensors"
        features.save(self.out / features_path)
        records = []
        for scene, start in windows:
            if start + CLIP_FRAMES + 2 > features.num_padded_frames:
                continue  # the audio ends before the picture
            subsets = assign_subsets(info, audible(stems, EFFECTS, start, fps), audible(stems, MUSIC, start, fps))
            records.append(ClipRecord(
                id=f"{video.stem}-{source_hash[:8]}-{start:06d}", source=str(video), source_hash=source_hash,
                start_frame=start, fps=fps, caption=info.caption, persons=info.persons, subsets=subsets,
                features=features_path, scene=scene, fields={**info.fields, "face_closeup": info.face_closeup, "frames": num_frames,
                                                    "second_speaker": second, "stems": origin},
            ))
        if not records:
            raise SkipClip("the audio is shorter than every window of the picture")
        return records

    @staticmethod
    def _stem_files(video: Path) -> dict:
        separated = {name: video.with_name(video.stem + suffix) for name, suffix in STEM_SUFFIXES.items()}
        return {name: path for name, path in separated.items() if path.is_file()}

    def _stems(self, video: Path):
        separated = self._stem_files(video)
        if separated:
            return stems_from_files(**separated)
        try:
            probe_audio(video)
        except MTVError as error:
            raise SkipClip(f"no audio: {error}") from error
        if not self.options.demixer:
            raise SkipClip(f"no pre-separated stems ({video.stem}_speech.wav, ...) and no --demixer to separate them")
        if self._demixer is None:
            self._demixer = load_demixer(self.options.demixer, device=self.options.device)
        return self._demixer.separate(load_audio(video))

    def _encode_missing(self, video: Path, record: ClipRecord) -> None:
        if self.options.vae and not (record.latents and (self.out / record.latents).is_file()):
            self._vae = self._vae or load_vae(self.options.vae, device=self.options.device)
            generator = torch.Generator().manual_seed(int(record.source_hash[:8], 16) + record.start_frame)
            latents = encode_frames(self._vae, read_window(video, record.start_frame, tuple(self.options.size)), generator)[0]
            record.latents = f"latents/{record.id}.safetensors"
            save_tensors(self.out / record.latents, {"latents": latents})
        if self.options.t5 and not (record.text and (self.out / record.text).is_file()):
            self._t5 = self._t5 or load_text_encoder(self.options.t5, device=self.options.device)
            record.text = text_cache_name(record.caption)
            if not (self.out / record.text).is_file():
                save_tensors(self.out / record.text, {"text": self._t5.encode([record.caption])[0].to(torch.bfloat16)})


def prepare_dataset(options: PrepareOptions) -> PrepareReport:
    videos = find_videos(Path(options.clips))
    captions = read_captions(Path(options.captions)) if options.captions else {}
    if options.captions:
        check_captions_match(captions, videos, Path(options.captions))
    out = Path(options.out)
    previous = read_manifest(out) if (out / MANIFEST).is_file() else []
    preparer = Preparer(options)
    report = PrepareReport(clips=len(videos), uncaptioned_entries=sorted(set(captions) - {v.name for v in videos}))
    records, done = [], set()
    for video in videos:
        name = str(video.relative_to(options.clips))
        try:
            info = captions.get(video.name) if options.captions else ClipInfo("", 0)
            if info is None:
                raise SkipClip(f"no caption for {video.name!r} in {str(options.captions)!r}")
            clip, reused = preparer.clip_records(video, info, previous)
            records += clip
            if reused:
                report.reused.append(name)
        except (SkipClip, MTVError, av.FFmpegError) as error:
            report.skipped[name] = str(error)
        done.add(str(video))
        # After every clip, so an interrupted run keeps what it finished and what it has not reached yet.
        write_manifest(out, records + [r for r in previous if r.source not in done])
    report.windows = len(records)
    atomic_write(out / REPORT, lambda temp: Path(temp).write_text(json.dumps(asdict(report), indent=2)))
    if not records:
        raise TrainerError(f"no usable clip: every one of the {len(videos)} clips was skipped\n{report.summary()}")
    return report
