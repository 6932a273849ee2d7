"""A prepared dataset: `manifest.jsonl` (one 49-frame clip window per line) plus cached tensors.

Layout under the dataset folder:
  manifest.jsonl                      records written by `prepare` (see `ClipRecord`)
  features/<source>.safetensors       wav2vec2 features of the whole source at native fps (AudioFeatures)
  latents/<clip>.safetensors          {"latents": (13, 16, h, w)} scaled VAE latents (optional)
  text/<caption hash>.safetensors     {"text": (226, d)} T5 embedding of the caption (optional)
Training needs latents and text; `prepare --vae --t5` writes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from mtv_core.audio import AudioFeatures
from mtv_core.fileio import atomic_write, contained_path
from mtv_core.spec import SEGMENT_FRAMES
from mtv_core.tensorfile import read_tensor_file

from .errors import TrainerError

MANIFEST = "manifest.jsonl"
CLIP_FRAMES = SEGMENT_FRAMES


@dataclass
class ClipRecord:
    """One training window: frames [start_frame, start_frame + 49) of `source` at its native fps."""
    id: str
    source: str
    source_hash: str
    start_frame: int
    fps: float
    caption: str
    persons: int
    subsets: list[str]
    features: str
    latents: str | None = None
    text: str | None = None
    scene: tuple[int, int] = (0, 0)
    fields: dict = field(default_factory=dict)


def text_cache_name(caption: str) -> str:
    return f"text/{hashlib.sha256(caption.encode()).hexdigest()[:20]}.safetensors"


def save_tensors(path: Path, tensors: dict) -> None:
    atomic_write(path, lambda temp: save_file({k: v.contiguous() for k, v in tensors.items()}, temp))


def write_manifest(root: Path, records: list[ClipRecord]) -> None:
    text = "".join(json.dumps(asdict(record)) + "\n" for record in records)
    atomic_write(Path(root) / MANIFEST, lambda temp: Path(temp).write_text(text))


def read_manifest(root: Path) -> list[ClipRecord]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise TrainerError(f"dataset {str(root)!r} has no {MANIFEST}; build it with `python -m trainer prepare --clips DIR --out {root}`")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                data = json.loads(line)
                data["scene"] = tuple(data.get("scene", (0, 0)))
                records.append(ClipRecord(**data))
            except (json.JSONDecodeError, TypeError) as error:
                raise TrainerError(f"{path}:{number}: not a manifest record ({error}); rebuild it with `python -m trainer prepare`") from error
    return records


def select_subset(root: Path, records: list[ClipRecord], subset: str, stage: str) -> list[ClipRecord]:
    chosen = [record for record in records if subset in record.subsets]
    if not chosen:
        counts = {name: sum(name in r.subsets for r in records) for name in sorted({s for r in records for s in r.subsets})}
        raise TrainerError(
            f"dataset {str(root)!r} has no clip in subset {subset!r}, which stage {stage!r} trains on "
            f"({len(records)} clips; per subset: {counts or 'none'}); add such clips and run prepare again, or pick another stage"
        )
    uncached = [record.id for record in chosen if not record.latents or not record.text]
    if uncached:
        raise TrainerError(
            f"{len(uncached)} clips of subset {subset!r} have no cached latents/text embeddings (e.g. {uncached[0]!r}); "
            "run `python -m trainer prepare` again with --vae and --t5 (finished clips are skipped)"
        )
    return chosen


class ClipDataset:
    """Items {latents (T, C, h, w), text (226, d), features {stream: (49, feature_dim)}} as float32."""
    def __init__(self, root: Path, records: list[ClipRecord], streams: tuple[str, ...]):
        self.root = Path(root)
        self.records = records
        self.streams = streams
        self._features: dict[str, AudioFeatures] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        return {
            "latents": self._tensor(record.latents, "latents"),
            "text": self._tensor(record.text, "text"),
            "features": self._features_window(record),
        }

    def feature_dim(self) -> int:
        return next(iter(self[0]["features"].values())).shape[-1]

    def _tensor(self, relative: str, key: str) -> torch.Tensor:
        path = contained_path(self.root, relative, "dataset folder")
        if not path.is_file():
            raise TrainerError(f"cached file {str(path)!r} listed in the manifest is missing; run `python -m trainer prepare` again")
        return read_tensor_file(path, "dataset file").load([key])[key].float()

    def _features_window(self, record: ClipRecord) -> dict:
        if record.features not in self._features:
            self._features[record.features] = AudioFeatures.load(contained_path(self.root, record.features, "dataset folder"))
        window = self._features[record.features].flat_window(record.start_frame, CLIP_FRAMES)
        reference = next(iter(window.values()))
        # A single-speaker clip gives a two-speaker model zero ("null") features for Person2.
        return {name: window.get(name, torch.zeros_like(reference)).float() for name in self.streams}


def collate(items: list[dict]) -> dict:
    return {
        "latents": torch.stack([item["latents"] for item in items]),
        "text": torch.stack([item["text"] for item in items]),
        "features": {name: torch.stack([item["features"][name] for item in items]) for name in items[0]["features"]},
    }


class EpochSampler:
    """Deterministic order: a seeded permutation per epoch, split across ranks. Its position
    (epoch, next index) is part of the training state, so a resumed run reads the same clips."""
    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed, self.rank, self.world = size, batch_size, seed, rank, world
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        # Every rank gets the same number of items (wrapping around), as DDP needs equal step counts.
        per_rank = -(-self.size // self.world)
        order = (order * (self.world + 1))[: per_rank * self.world]
        return order[self.rank :: self.world]

    def next_batch(self) -> list[int]:
        batch = []
        while len(batch) < self.batch_size:
            order = self._order()
            if self.position >= len(order):
                self.epoch, self.position = self.epoch + 1, 0
                continue
            batch.append(order[self.position])
            self.position += 1
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
