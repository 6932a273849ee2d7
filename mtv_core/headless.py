"""Queue an API-format workflow on a ComfyUI server, follow it, and download what it saved.

Standard library only (urllib): a headless box needs nothing beyond this package to drive a server.
"""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .errors import ConfigError, GenerationError
from .fileio import atomic_write

OUTPUT_KINDS = ("images", "videos", "gifs", "audio", "files")


def load_api_workflow(path) -> dict:
    path = Path(path)
    try:
        graph = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the workflow ({error})") from error
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise ConfigError(
            f"{path} is a UI-format workflow (what you drag into ComfyUI); /prompt takes the API format. "
            "Use the file under workflows/api/, or export with 'Export (API)' in ComfyUI")
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise ConfigError(f"{path}: not an API-format workflow ({{node_id: {{class_type, inputs}}}})")
    return graph


def apply_override(graph: dict, assignment: str, declared_inputs=None) -> None:
    """NODE.INPUT=VALUE; NODE is a node id, a class_type (if unique) or a _meta title. VALUE is JSON or text.
    `declared_inputs(class_type) -> set` lets an input the graph leaves at its default be set too."""
    target, sep, raw = assignment.partition("=")
    node_key, dot, input_name = target.rpartition(".")
    if not sep or not dot or not node_key or not input_name:
        raise ConfigError(f"--set {assignment!r}: write NODE.INPUT=VALUE, e.g. 5.audio=my_song.wav or MTVSampler.seed=7")
    node_id = _find_node(graph, node_key, assignment)
    inputs = graph[node_id]["inputs"]
    known = set(inputs)
    if input_name not in known and declared_inputs is not None:
        known |= declared_inputs(graph[node_id]["class_type"])
    if input_name not in known:
        raise ConfigError(f"--set {assignment!r}: node {node_id} ({graph[node_id]['class_type']}) has no input "
                          f"{input_name!r}; it has {sorted(known)}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    inputs[input_name] = value


def _find_node(graph: dict, key: str, assignment: str) -> str:
    if key in graph:
        return key
    matches = [i for i, n in graph.items() if n["class_type"] == key or n.get("_meta", {}).get("title") == key]
    if len(matches) == 1:
        return matches[0]
    what = "several nodes" if matches else "no node"
    raise ConfigError(f"--set {assignment!r}: {what} called {key!r}; use the node id ({', '.join(sorted(graph, key=_as_int))})")


def _as_int(text: str):
    return int(text) if text.isdigit() else text


class ComfyClient:
    def __init__(self, server: str, timeout: float = 30.0):
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(self.server + path, data=data, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as error:
            raise GenerationError(f"cannot reach the ComfyUI server at {self.server} ({error}); start it, or pass --server") from error

    def _json(self, path: str, payload: dict | None = None):
        data = None if payload is None else json.dumps(payload).encode()
        with self._request(path, data, {"Content-Type": "application/json"} if data else None) as response:
            return json.loads(response.read())

    def declared_inputs(self, class_type: str) -> set:
        """The inputs a node type declares on this server (GET /object_info/<class>)."""
        try:
            info = self._json(f"/object_info/{urllib.parse.quote(class_type)}").get(class_type, {}).get("input", {})
        except urllib.error.HTTPError:
            return set()
        return {name for section in ("required", "optional") for name in info.get(section, {})}

    def upload(self, path) -> str:
        """Put a file into the server's input folder (ComfyUI's /upload/image takes any file); returns its name."""
        path = Path(path)
        boundary = uuid.uuid4().hex
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
                f"Content-Type: {kind}\r\n\r\n").encode() + path.read_bytes() + \
               f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n".encode()
        with self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}) as response:
            return json.loads(response.read())["name"]

    def submit(self, graph: dict) -> str:
        try:
            return self._json("/prompt", {"prompt": graph, "client_id": self.client_id})["prompt_id"]
        except urllib.error.HTTPError as error:
            raise GenerationError("the server refused the workflow:\n" + describe_refusal(json.loads(error.read() or b"{}"), graph)) from None

    def wait(self, prompt_id: str, poll: float = 1.0, limit: float | None = None, report=print) -> dict:
        start, last = time.monotonic(), None
        while True:
            history = self._json(f"/history/{prompt_id}").get(prompt_id)
            if history and history.get("status", {}).get("completed") is not None:
                status = history["status"]
                if status.get("status_str") == "error" or not status.get("completed"):
                    raise GenerationError("the workflow failed on the server:\n" + describe_failure(status))
                return history
            state = self._state(prompt_id)
            if state != last:
                report(f"{state} ({time.monotonic() - start:.0f}s)")
                last = state
            if limit is not None and time.monotonic() - start > limit:
                raise GenerationError(f"gave up after {limit:.0f}s; the job {prompt_id} is still {state} on the server")
            time.sleep(poll)

    def _state(self, prompt_id: str) -> str:
        queue = self._json("/queue")
        if any(item[1] == prompt_id for item in queue.get("queue_running", [])):
            return "running"
        pending = [item[1] for item in queue.get("queue_pending", [])]
        return f"waiting ({pending.index(prompt_id) + 1} in queue)" if prompt_id in pending else "finishing"

    def download_outputs(self, history: dict, out_dir) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        saved = []
        for node_output in history.get("outputs", {}).values():
            for kind in OUTPUT_KINDS:
                for item in node_output.get(kind, []) or []:
                    if not isinstance(item, dict) or "filename" not in item:
                        continue
                    query = urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})
                    with self._request(f"/view?{query}") as response:
                        saved.append(_write_atomically(out_dir / Path(item["filename"]).name, response.read()))
        return saved


def describe_refusal(answer: dict, graph: dict) -> str:
    lines = []
    error = answer.get("error")
    if isinstance(error, dict):
        lines.append(f"  {error.get('message', '')} {error.get('details', '')}".rstrip())
    for node_id, node_error in (answer.get("node_errors") or {}).items():
        kind = node_error.get("class_type") or graph.get(node_id, {}).get("class_type", "?")
        for item in node_error.get("errors", []):
            where = item.get("extra_info", {}).get("input_name")
            lines.append(f"  node {node_id} ({kind}){f', input {where!r}' if where else ''}: {item.get('message')} {item.get('details', '')}".rstrip())
    return "\n".join(lines) or json.dumps(answer)


def describe_failure(status: dict) -> str:
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            return f"  node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: {data.get('exception_message', '').strip()}"
        if kind == "execution_interrupted":
            return f"  interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    return json.dumps(status)


def _write_atomically(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda temp: Path(temp).write_bytes(data))
