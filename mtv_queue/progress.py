"""What the progress stream says, for a person: a line per sampler step (at most one a second), and the latest
preview image kept in a file."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from mtv_core.fileio import atomic_write

# ComfyUI's binary preview message: event 1 (4 bytes), the image type (4 bytes: 1 JPEG, 2 PNG), the image.
PREVIEW_EVENT = 1
PREVIEW_TYPES = {1: (".jpg", b"\xff\xd8\xff"), 2: (".png", b"\x89PNG\r\n\x1a\n")}
MAX_PREVIEW_BYTES = 4 * 2**20


def preview_image(message: bytes) -> tuple[str, bytes] | None:
    """(suffix, image) of a ComfyUI preview message; None for other binary messages and for any preview over
    MAX_PREVIEW_BYTES or whose bytes are not the JPEG or PNG its type says (the server is not trusted)."""
    if len(message) < 8 or len(message) - 8 > MAX_PREVIEW_BYTES:
        return None
    event, kind = struct.unpack(">II", message[:8])
    suffix, magic = PREVIEW_TYPES.get(kind, (None, None))
    if event != PREVIEW_EVENT or suffix is None or not message[8:].startswith(magic):
        return None
    return suffix, message[8:]


class StepLines:
    """A prompt's `progress` messages as lines ("MTVSampler (node 10): 3/30 (12s)"), at most one a second; the
    last step is always told. `node_names` maps node ids to what to call them."""

    def __init__(self, prompt_id: str, report, node_names: dict, started: float):
        self.prompt_id, self.report, self.node_names, self.started = prompt_id, report, node_names, started
        self.last_told = 0.0

    def take(self, message: dict) -> None:
        data = message.get("data")
        if message.get("type") != "progress" or not isinstance(data, dict):
            return
        if data.get("prompt_id") not in (None, self.prompt_id):
            return
        now, done = time.monotonic(), data.get("value") == data.get("max")
        if done or now - self.last_told >= 1.0:
            self.last_told = now
            node = self.node_names.get(str(data.get("node")), f"node {data.get('node')}")
            self.report(f"{node}: {data.get('value')}/{data.get('max')} ({now - self.started:.0f}s)")


class LatestPreview:
    """The latest preview image, kept as FOLDER/preview.jpg (or .png) and replaced atomically as new ones come;
    the first one saved is told, and a folder that cannot be written stops the saving (once told)."""

    def __init__(self, folder, report):
        self.folder, self.report, self.told = Path(folder), report, False

    def keep(self, message: bytes) -> None:
        image = preview_image(message)
        if self.folder is None or image is None:
            return
        suffix, data = image
        try:
            path = atomic_write(self.folder / f"preview{suffix}", lambda temp: Path(temp).write_bytes(data))
        except OSError as error:
            self.report(f"previews are no longer saved: {error}")
            self.folder = None
            return
        if not self.told:
            self.report(f"live preview: {path} (replaced at every step)")
            self.told = True
