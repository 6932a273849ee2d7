"""One ComfyUI server: upload inputs, submit a prompt, follow it (progress stream, /history), download outputs."""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.parse
import uuid
from pathlib import Path

from mtv_core.errors import ConfigError, GenerationError

from .deadline import Deadline
from .downloads import download_outputs
from .options import DEFAULT_SERVER, SERVER, UPLOAD
from .progress import LatestPreview, StepLines
from .progress_stream import ProgressEnded, ProgressStream
from .server_http import ServerHTTP
from .workflow import describe_failure, describe_refusal

DEFAULT_MAX_DOWNLOAD = 8 * 2**30
CONNECT_SECONDS = 10.0


class ComfyClient:
    """A server at `server` (http or https), with one deadline of `timeout` seconds for everything done through
    this client (None: no limit) and a limit of `max_download` bytes on each output. `stop` (a threading.Event)
    ends a run at its next wait or read. Close it, or use it in a `with` block."""

    def __init__(self, server: str, timeout: float | None = None, max_download: int = DEFAULT_MAX_DOWNLOAD, stop=None):
        check_address(server)
        self.server = server.rstrip("/")
        self.deadline = Deadline(timeout, stop)
        self.max_download = max_download
        self.client_id = uuid.uuid4().hex
        self.http = ServerHTTP(self.server, self.deadline)

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- the API ------------------------------------------------------------------------------------------------
    def declared_inputs(self, class_type: str) -> set:
        """The inputs a node type declares on this server (GET /object_info/<class>); none when it cannot say."""
        try:
            info = self.http.json(f"/object_info/{urllib.parse.quote(class_type)}")
        except GenerationError:
            return set()
        declared = (info.get(class_type) or {}).get("input") or {}
        return {name for section in ("required", "optional") for name in (declared.get(section) or {})}

    def object_info(self) -> dict:
        """Every node type the server offers, with its inputs (GET /object_info)."""
        return self.http.json("/object_info")

    def queue_length(self) -> int:
        """How many prompts the server is running or has waiting (GET /queue)."""
        queue = self.http.json("/queue")
        lists = [queue.get(key) or [] for key in ("queue_running", "queue_pending")]
        if not all(isinstance(items, list) for items in lists):
            raise GenerationError(f"{self.server}/queue answered without the running and pending lists ComfyUI sends")
        return sum(map(len, lists))

    def upload(self, path, name: str | None = None) -> str:
        """Put a file into the server's input folder (ComfyUI's /upload/image takes any file) as `name` (default:
        the file's own name); returns the name the server gave it."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{UPLOAD} {str(path)!r}: no such file")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        name = (name or path.name).replace('"', "_")
        with open(path, "rb") as handle:
            answer = self.http.exchange("POST", "/upload/image", files={"image": (name, handle, kind)},
                                        data={"overwrite": "true"})
        if not answer.ok:
            raise GenerationError(f"the server refused the upload of {path.name} (HTTP {answer.status})")
        reply = self.http.parse(answer.body, "/upload/image", dict)
        if not isinstance(reply.get("name"), str):
            raise GenerationError(f"the server's answer to the upload of {path.name} names no file: {str(reply)[:200]}")
        return reply["name"]

    def submit(self, graph: dict) -> str:
        """Queue the workflow; its prompt id. A refusal lists the server's node errors, one line each."""
        payload = json.dumps({"prompt": graph, "client_id": self.client_id}).encode()
        answer = self.http.exchange("POST", "/prompt", data=payload, headers={"Content-Type": "application/json"})
        if not answer.ok:
            try:
                refusal = json.loads(answer.body)
            except ValueError:
                refusal = f"HTTP {answer.status}: {answer.body[:200]!r}"
            raise GenerationError("the server refused the workflow:\n" + describe_refusal(refusal, graph))
        reply = self.http.parse(answer.body, "/prompt", dict)
        if not isinstance(reply.get("prompt_id"), str):
            raise GenerationError(f"the server accepted the workflow but gave no prompt id: {str(reply)[:200]}")
        return reply["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        """The prompt's history entry once it has finished, else None."""
        entry = self.http.json(f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)
        if entry is None:
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("status", {}), dict):
            raise GenerationError(f"the server's history of {prompt_id} is not what ComfyUI writes: {str(entry)[:200]}")
        return entry if entry.get("status", {}).get("completed") is not None else None

    def download_outputs(self, history: dict, out_dir) -> list[Path]:
        """Every file the prompt saved, into out_dir (see downloads.download_outputs)."""
        return download_outputs(self.http, history, out_dir, self.max_download)

    # -- following a prompt -------------------------------------------------------------------------------------
    def wait(self, prompt_id: str, report=print, poll: float = 1.0, node_names: dict | None = None,
             previews=None) -> dict:
        """Follow the prompt until it ends; its history entry. Progress (at most a line a second) comes from the
        progress stream when the server offers one. `node_names` maps node ids to what to call them. With
        `previews` (a folder), the latest preview image the server sends is kept there as preview.jpg (or .png)."""
        progress = ProgressStream.open(self.server, self.client_id, self.deadline.left(CONNECT_SECONDS))
        started, last_poll, last_state = time.monotonic(), 0.0, None
        steps = StepLines(prompt_id, report, node_names or {}, started)
        preview = None if previews is None else LatestPreview(previews, report)
        try:
            while True:
                if progress is not None:
                    progress = self._follow(progress, steps, preview)
                else:
                    self.deadline.sleep(poll)
                if time.monotonic() - last_poll >= poll:
                    last_poll = time.monotonic()
                    entry = self.history(prompt_id)
                    if entry is not None:
                        return finished(entry)
                    state = self._state(prompt_id)
                    if state != last_state:
                        report(f"{state} ({time.monotonic() - started:.0f}s)")
                        last_state = state
        finally:
            if progress is not None:
                progress.close()

    def _follow(self, progress: ProgressStream, steps: StepLines, preview: LatestPreview | None):
        """Take one message (waiting up to a second); the stream, or None once it has ended."""
        try:
            message = progress.receive(self.deadline.left(1.0))
        except ProgressEnded:
            progress.close()
            return None
        if isinstance(message, bytes):
            if preview is not None:
                preview.keep(message)
        elif message is not None:
            steps.take(message)
        return progress

    def _state(self, prompt_id: str) -> str:
        queue = self.http.json("/queue")
        running = [item[1] for item in queue.get("queue_running") or [] if isinstance(item, list) and len(item) > 1]
        pending = [item[1] for item in queue.get("queue_pending") or [] if isinstance(item, list) and len(item) > 1]
        if prompt_id in running:
            return "running"
        return f"waiting ({pending.index(prompt_id) + 1} in queue)" if prompt_id in pending else "finishing"


def check_address(server: str) -> None:
    """Refuse what is not an http(s) address with a host (and a port number, when it has one)."""
    try:
        parts = urllib.parse.urlsplit(server)
        good = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        good = False
    if not good:
        raise ConfigError(f"{SERVER} {server!r} is not an http(s) address; give e.g. {DEFAULT_SERVER}")


def finished(entry: dict) -> dict:
    """The history entry of a prompt that ended well; a failed or interrupted one is a GenerationError."""
    status = entry["status"]
    if status.get("status_str") == "error" or not status.get("completed"):
        raise GenerationError("the workflow failed on the server:\n" + describe_failure(status))
    return entry
