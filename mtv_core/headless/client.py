"""One ComfyUI server: upload inputs, submit a prompt, follow it (websocket progress, /history), download outputs."""

from __future__ import annotations

import json
import mimetypes
import os
import re
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from ..errors import ConfigError, GenerationError
from ..fileio import atomic_write, relative_name, temp_file_beside
from .websocket import WebSocketClosed, WebSocketReader
from .workflow import describe_failure, describe_refusal

OUTPUT_KINDS = ("images", "videos", "gifs", "audio", "files")
MAX_JSON_BYTES = 32 * 2**20
DEFAULT_MAX_DOWNLOAD = 8 * 2**30
REQUEST_TIMEOUT = 30.0
_ODD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
# ComfyUI's binary preview message: event 1 (4 bytes), the image type (4 bytes: 1 JPEG, 2 PNG), the image.
PREVIEW_EVENT = 1
PREVIEW_TYPES = {1: (".jpg", b"\xff\xd8\xff"), 2: (".png", b"\x89PNG\r\n\x1a\n")}
MAX_PREVIEW_BYTES = 4 * 2**20


class Deadline:
    """One limit for a whole run: every wait and every read takes what is left of it. Setting `stop` (a
    threading.Event) ends the run at the next wait or read."""

    def __init__(self, seconds: float | None, stop=None):
        self.end = None if seconds is None else time.monotonic() + seconds
        self.stop = stop

    def left(self, cap: float) -> float:
        if self.stop is not None and self.stop.is_set():
            raise GenerationError("stopped")
        if self.end is None:
            return cap
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise GenerationError("gave up: the --timeout has passed; the job may still be running on the server")
        return min(cap, remaining)

    def sleep(self, seconds: float) -> None:
        """Pause for up to `seconds`; a stop ends the pause at once."""
        pause = self.left(seconds)
        if self.stop is None:
            time.sleep(pause)
        else:
            self.stop.wait(pause)


class ComfyClient:
    def __init__(self, server: str, timeout: float | None = None, max_download: int = DEFAULT_MAX_DOWNLOAD, stop=None):
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--server {server!r} is not an http(s) address; give e.g. http://127.0.0.1:8188")
        self.server = server.rstrip("/")
        self.deadline = Deadline(timeout, stop)
        self.max_download = max_download
        self.client_id = uuid.uuid4().hex

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _open(self, path: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(self.server + path, data=data, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.deadline.left(REQUEST_TIMEOUT))
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise GenerationError(f"cannot reach the ComfyUI server at {self.server} ({getattr(error, 'reason', error)}); "
                                  "start it, or pass --server") from error

    def _read(self, response, limit: int, sink=None) -> bytes:
        """The body in pieces, the deadline checked between them (a server that drips a byte at a time is still
        bounded), at most `limit` bytes; into `sink` (a file) when given."""
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise GenerationError(f"{self.server} would send {int(declared)} bytes, more than the {limit} accepted; "
                                  "refused (raise --max-download-mb if it is right)")
        chunks, size = [], 0
        while True:
            self.deadline.left(REQUEST_TIMEOUT)
            try:
                chunk = getattr(response, "read1", response.read)(1 << 20)
            except (OSError, ValueError) as error:
                raise GenerationError(f"the connection to {self.server} broke while reading ({error})") from error
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise GenerationError(f"{self.server} sent more than the {limit} bytes accepted; refused (raise "
                                      "--max-download-mb if it is right)")
            if sink is None:
                chunks.append(chunk)
            else:
                sink.write(chunk)

    def _json(self, path: str, payload: dict | None = None, expect: type = dict):
        data = None if payload is None else json.dumps(payload).encode()
        try:
            with self._open(path, data, {"Content-Type": "application/json"} if data else None) as response:
                body = self._read(response, MAX_JSON_BYTES)
        except urllib.error.HTTPError as error:
            raise GenerationError(f"{self.server}{path.split('?')[0]} answered HTTP {error.code} ({error.reason}); "
                                  "is this a ComfyUI server with the MTV pack?") from None
        return self._parse(body, path, expect)

    def _parse(self, body: bytes, path: str, expect: type):
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise GenerationError(f"{self.server}{path.split('?')[0]} answered with something that is not JSON "
                                  f"({body[:60]!r}); is this a ComfyUI server?") from None
        if not isinstance(value, expect):
            raise GenerationError(f"{self.server}{path.split('?')[0]} answered with a {type(value).__name__} where a "
                                  f"{expect.__name__} belongs; is this a ComfyUI server?")
        return value

    # -- the API ------------------------------------------------------------------------------------------------
    def declared_inputs(self, class_type: str) -> set:
        """The inputs a node type declares on this server (GET /object_info/<class>)."""
        try:
            info = self._json(f"/object_info/{urllib.parse.quote(class_type)}")
        except GenerationError:
            return set()
        declared = (info.get(class_type) or {}).get("input") or {}
        return {name for section in ("required", "optional") for name in (declared.get(section) or {})}

    def object_info(self) -> dict:
        """Every node type the server offers, with its inputs (GET /object_info)."""
        return self._json("/object_info")

    def queue_length(self) -> int:
        """How many prompts the server is running or has waiting (GET /queue)."""
        queue = self._json("/queue")
        lists = [queue.get(key) or [] for key in ("queue_running", "queue_pending")]
        if not all(isinstance(items, list) for items in lists):
            raise GenerationError(f"{self.server}/queue answered without the running and pending lists ComfyUI sends")
        return sum(map(len, lists))

    def upload(self, path, name: str | None = None) -> str:
        """Put a file into the server's input folder (ComfyUI's /upload/image takes any file) as `name` (default:
        the file's own name); returns the name the server gave it."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--upload {str(path)!r}: no such file")
        boundary = uuid.uuid4().hex
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        name = (name or path.name).replace('"', "_")
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                f"Content-Type: {kind}\r\n\r\n").encode() + path.read_bytes() + \
               f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n".encode()
        try:
            with self._open("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}) as response:
                answer = self._parse(self._read(response, MAX_JSON_BYTES), "/upload/image", dict)
        except urllib.error.HTTPError as error:
            raise GenerationError(f"the server refused the upload of {path.name} (HTTP {error.code})") from None
        if not isinstance(answer.get("name"), str):
            raise GenerationError(f"the server's answer to the upload of {path.name} names no file: {str(answer)[:200]}")
        return answer["name"]

    def submit(self, graph: dict) -> str:
        data = json.dumps({"prompt": graph, "client_id": self.client_id}).encode()
        try:
            with self._open("/prompt", data, {"Content-Type": "application/json"}) as response:
                answer = self._parse(self._read(response, MAX_JSON_BYTES), "/prompt", dict)
        except urllib.error.HTTPError as error:
            body = self._read(error, MAX_JSON_BYTES) if error.fp else b""
            try:
                refusal = json.loads(body)
            except (UnicodeDecodeError, ValueError):
                refusal = f"HTTP {error.code}: {body[:200]!r}"
            raise GenerationError("the server refused the workflow:\n" + describe_refusal(refusal, graph)) from None
        if not isinstance(answer.get("prompt_id"), str):
            raise GenerationError(f"the server accepted the workflow but gave no prompt id: {str(answer)[:200]}")
        return answer["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        """The prompt's history entry once it has finished, else None."""
        entry = self._json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)
        if entry is None:
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("status", {}), dict):
            raise GenerationError(f"the server's history of {prompt_id} is not what ComfyUI writes: {str(entry)[:200]}")
        return entry if entry.get("status", {}).get("completed") is not None else None

    def wait(self, prompt_id: str, report=print, poll: float = 1.0, node_names: dict | None = None,
             previews=None) -> dict:
        """Follow the prompt until it ends; progress (at most a line a second) from the websocket when the server
        offers one. `node_names` maps node ids to what to call them. With `previews` (a folder), the latest preview
        image the server sends is kept there as preview.jpg (or .png), replaced as new ones come."""
        progress = self._connect_progress()
        started, last_poll, last_state = time.monotonic(), 0.0, None
        self._last_report, self._node_names = 0.0, node_names or {}
        self._previews, self._preview_told = (None if previews is None else Path(previews)), False
        try:
            while True:
                if progress is not None:
                    progress = self._read_progress(progress, prompt_id, report, started)
                else:
                    self.deadline.sleep(poll)
                if time.monotonic() - last_poll >= poll:
                    last_poll = time.monotonic()
                    entry = self.history(prompt_id)
                    if entry is not None:
                        return self._finished(entry)
                    state = self._state(prompt_id)
                    if state != last_state:
                        report(f"{state} ({time.monotonic() - started:.0f}s)")
                        last_state = state
        finally:
            if progress is not None:
                progress.close()

    def _connect_progress(self):
        try:
            return WebSocketReader(self.server, self.client_id, self.deadline.left(10.0))
        except (OSError, WebSocketClosed):
            return None  # older or proxied servers: follow /history alone

    def _read_progress(self, progress, prompt_id: str, report, started: float):
        try:
            message = progress.receive(self.deadline.left(1.0))
        except WebSocketClosed:
            progress.close()
            return None
        if isinstance(message, bytes):
            self._keep_preview(message, report)
            return progress
        data = (message or {}).get("data")
        if message and message.get("type") == "progress" and isinstance(data, dict) and data.get("prompt_id") in (None, prompt_id):
            now, done = time.monotonic(), data.get("value") == data.get("max")
            if done or now - self._last_report >= 1.0:
                self._last_report = now
                node = self._node_names.get(str(data.get("node")), f"node {data.get('node')}")
                report(f"{node}: {data.get('value')}/{data.get('max')} ({now - started:.0f}s)")
        return progress

    def _keep_preview(self, message: bytes, report) -> None:
        image = preview_image(message)
        if self._previews is None or image is None:
            return
        suffix, data = image
        try:
            path = atomic_write(self._previews / f"preview{suffix}", lambda temp: Path(temp).write_bytes(data))
        except OSError as error:
            report(f"previews are no longer saved: {error}")
            self._previews = None
            return
        if not self._preview_told:
            report(f"live preview: {path} (replaced at every step)")
            self._preview_told = True

    @staticmethod
    def _finished(entry: dict) -> dict:
        status = entry["status"]
        if status.get("status_str") == "error" or not status.get("completed"):
            raise GenerationError("the workflow failed on the server:\n" + describe_failure(status))
        return entry

    def _state(self, prompt_id: str) -> str:
        queue = self._json("/queue")
        running = [item[1] for item in queue.get("queue_running") or [] if isinstance(item, list) and len(item) > 1]
        pending = [item[1] for item in queue.get("queue_pending") or [] if isinstance(item, list) and len(item) > 1]
        if prompt_id in running:
            return "running"
        return f"waiting ({pending.index(prompt_id) + 1} in queue)" if prompt_id in pending else "finishing"

    # -- outputs ------------------------------------------------------------------------------------------------
    def download_outputs(self, history: dict, out_dir) -> list[Path]:
        """Every file the prompt saved, into out_dir/<subfolder>/<name>; an existing file is never replaced (a new
        name is chosen), and a name that is hidden, odd or climbs out of out_dir is refused."""
        out_dir = Path(out_dir)
        saved = []
        for item in output_items(history):
            target = unique_path(out_dir / _safe_subfolder(item["subfolder"]) / _safe_file_name(item["filename"]))
            query = urllib.parse.urlencode({k: item[k] for k in ("filename", "subfolder", "type")})
            saved.append(self._download(f"/view?{query}", target))
        return saved

    def _download(self, path: str, target: Path) -> Path:
        fd, temp = temp_file_beside(target)
        try:
            with os.fdopen(fd, "wb") as sink, self._open(path) as response:
                self._read(response, self.max_download, sink)
            _publish_new(temp, target)
        except urllib.error.HTTPError as error:
            raise GenerationError(f"the server could not send {target.name} (HTTP {error.code})") from None
        finally:
            Path(temp).unlink(missing_ok=True)
        return target


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


def output_items(history: dict) -> list[dict]:
    """The saved-file entries of a history entry, each checked to be {filename, subfolder, type} strings."""
    outputs = history.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise GenerationError(f"the server's history lists outputs as a {type(outputs).__name__}, not a mapping")
    items = []
    for node_output in outputs.values():
        for kind in OUTPUT_KINDS if isinstance(node_output, dict) else ():
            for item in node_output.get(kind) or []:
                if isinstance(item, dict) and "filename" in item:
                    entry = {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")}
                    if not all(isinstance(value, str) for value in entry.values()):
                        raise GenerationError(f"the server named an output with a non-text value: {str(item)[:200]}")
                    items.append(entry)
    return items


def _safe_file_name(name: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or len(name) > 255 or _ODD_NAME.search(name):
        raise GenerationError(f"the server named an output {name[:80]!r}: hidden, empty, too long or with a path "
                              "or control character; refused")
    return name


def _safe_subfolder(subfolder: str) -> Path:
    if not subfolder:
        return Path()
    try:
        relative = relative_name(subfolder, "output folder")
    except ConfigError as error:
        raise GenerationError(f"the server named an output subfolder {subfolder[:80]!r}; refused ({error})") from None
    if any(part.startswith(".") for part in relative.parts):
        raise GenerationError(f"the server named a hidden output subfolder {subfolder[:80]!r}; refused")
    return Path(*relative.parts)


def unique_path(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`, ... if it exists."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem} ({number}){path.suffix}")
    return candidate


def _publish_new(temp: str, target: Path) -> None:
    """Rename into place without replacing anything that appeared meanwhile (a hard link fails if it exists)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise GenerationError(f"{target} appeared while downloading; kept it and discarded the download") from None
    except OSError:
        if target.exists():
            raise GenerationError(f"{target} appeared while downloading; kept it and discarded the download") from None
        os.replace(temp, target)
    os.chmod(target, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
