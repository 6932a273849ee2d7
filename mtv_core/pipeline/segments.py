"""Long audio as chained 49-frame segments, colour matching at the joins, and an on-disk store for resuming.

Segment k covers output frames [44k, 44k + 49). For k > 0 its first 5 frames repeat the previous segment's last
5 frames: those are VAE-encoded into 2 clean prefix latents, and only frames 5..48 are kept. The output is cut to
exactly round(audio duration x fps) frames.
"""

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import GenerationError, ModelFileError
from ..fileio import FolderLock, atomic_write
from ..spec import FPS, PREFIX_FRAMES, SEGMENT_FRAMES, SEGMENT_STRIDE
from ..tensorfile import read_tensor_file, write_tensor_file


@dataclass(frozen=True)
class Segment:
    index: int
    start_frame: int  # first output frame this segment generates (its prefix included)
    keep_from: int  # frames before this index repeat the previous segment

    @property
    def has_prefix(self) -> bool:
        return self.keep_from > 0

    def centre_time(self, fps: float) -> float:
        return (self.start_frame + (SEGMENT_FRAMES - 1) / 2) / fps


@dataclass(frozen=True)
class SegmentPlan:
    total_frames: int
    segments: tuple[Segment, ...]

    def segment(self, index: int) -> Segment:
        count = len(self.segments)
        if not 0 <= index < count:
            raise GenerationError(f"segment {index} does not exist: the audio has {count} segments (0..{count - 1}); "
                                  "choose one of those")
        return self.segments[index]


def output_frame_count(duration_seconds: float, fps: float) -> int:
    return int(round(duration_seconds * fps))


def plan_segments(total_frames: int) -> SegmentPlan:
    """The fewest segments whose kept frames cover total_frames output frames."""
    if total_frames < 1:
        raise GenerationError(f"the audio gives {total_frames} video frames; it needs at least 1 frame of sound")
    count = 1 + max(0, math.ceil((total_frames - SEGMENT_FRAMES) / SEGMENT_STRIDE))
    segments = tuple(Segment(k, k * SEGMENT_STRIDE, PREFIX_FRAMES if k else 0) for k in range(count))
    return SegmentPlan(total_frames, segments)


def plan_for_duration(seconds: float) -> SegmentPlan:
    """The segments of a video as long as audio of `seconds`: round(seconds x fps) output frames."""
    frames = output_frame_count(seconds, FPS)
    if frames < 1:
        raise GenerationError(f"the audio lasts {seconds:.3f}s, shorter than one video frame (1/{FPS:g}s); "
                              "give longer audio")
    return plan_segments(frames)


_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _to_ycbcr(frames: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,j...->i...", _RGB_TO_YCBCR, frames)


def _from_ycbcr(frames: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,j...->i...", torch.linalg.inv(_RGB_TO_YCBCR), frames)


def match_colour(frames: torch.Tensor, reference: torch.Tensor, overlap: int = PREFIX_FRAMES) -> torch.Tensor:
    """Shift and scale each YCbCr channel of frames (3, F, H, W) so that its first `overlap` frames get the mean and
    std of reference (3, overlap, H, W), the previous segment's tail. Measured on the overlap, applied to all frames."""
    source, target = _to_ycbcr(frames.float()), _to_ycbcr(reference.float())
    dims = (1, 2, 3)
    src_mean, src_std = source[:, :overlap].mean(dims), source[:, :overlap].std(dims)
    ref_mean, ref_std = target.mean(dims), target.std(dims)
    gain = ref_std / src_std.clamp_min(1e-5)
    matched = (source - src_mean[:, None, None, None]) * gain[:, None, None, None] + ref_mean[:, None, None, None]
    return _from_ycbcr(matched).clamp(-1, 1)


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous()


def fingerprint(*parts) -> str:
    """A stable hash of everything that decides a job's pixels (tensors by their bytes, the rest as JSON)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(str((tuple(part.shape), str(part.dtype))).encode())
            digest.update(part.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


JOB_ID_LENGTH = 16
MANIFEST_FORMAT = "mtv-segments"


class SegmentStore:
    """Finished segments of one job: `<work folder>/<job id>/segment_NNNN.safetensors`, each written atomically
    (fsync, ordinary permissions). The job id is the start of the job's fingerprint, so several jobs share a work
    folder without touching each other's files (changing a setting back resumes that job), and nothing the store did
    not write is ever deleted. While open the store holds the job folder's lock: a second run of the same job is
    refused, not interleaved. A segment file that cannot be read is named and computed again."""
    def __init__(self, work_folder, job_fingerprint: str):
        self.job = job_fingerprint
        self.work_folder = Path(work_folder)
        self.folder = self.work_folder / job_fingerprint[:JOB_ID_LENGTH]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise GenerationError(f"cannot create the segment folder {str(self.folder)!r}: {error}; "
                                  "choose a writable work folder") from error
        self.lock = FolderLock(self.folder, "the segment folder")
        self._claim()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.lock.release()

    def _manifest(self) -> Path:
        return self.folder / "job.json"

    def _claim(self) -> None:
        manifest = self._manifest()
        if manifest.is_file():
            try:
                recorded = json.loads(manifest.read_text()).get("fingerprint")
            except (OSError, ValueError, AttributeError):
                warnings.warn(f"{manifest} is unreadable; writing it again", stacklevel=3)
                recorded = None
            if recorded not in (None, self.job):
                raise GenerationError(f"{self.folder} belongs to another job (fingerprint {str(recorded)[:16]}...); "
                                      "choose another work folder")
            if recorded == self.job:
                return
        atomic_write(manifest, lambda temp: Path(temp).write_text(json.dumps({"format": MANIFEST_FORMAT, "fingerprint": self.job})))

    def path(self, index: int) -> Path:
        return self.folder / f"segment_{index:04d}.safetensors"

    def save(self, index: int, kept: torch.Tensor, tail: torch.Tensor) -> None:
        """kept: (F, H, W, 3) uint8 output frames; tail: (3, 5, H, W) float32 last frames for the next prefix."""
        tensors = {"kept": kept.contiguous(), "tail": tail.float().contiguous()}
        write_tensor_file(self.path(index), tensors, {"fingerprint": self.job})

    def load(self, index: int):
        """(kept, tail) of a finished segment, or None when it is not there or cannot be used (then it is computed
        again and the new file replaces the bad one)."""
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            file = read_tensor_file(path, "segment file")
            if file.metadata.get("fingerprint") != self.job or set(file.tensors) != {"kept", "tail"}:
                raise ModelFileError(f"{path}: not a segment of this job")
            loaded = file.load()
        except ModelFileError as error:
            warnings.warn(f"{error}; computing segment {index} again", stacklevel=2)
            return None
        return loaded["kept"], loaded["tail"]

    def completed(self) -> int:
        """How many segments from the first on are finished."""
        count = 0
        while self.path(count).is_file():
            count += 1
        return count

    def remove(self) -> None:
        """Delete this job's files (after its video is written); the folders go too when nothing else is in them."""
        for path in self.folder.glob("segment_*.safetensors"):
            path.unlink()
        self._manifest().unlink(missing_ok=True)
        self.close()
        for folder in (self.folder, self.work_folder):
            try:
                folder.rmdir()
            except OSError:
                pass  # it holds other files: leave it
