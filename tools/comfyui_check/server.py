"""A real ComfyUI started for the check, and what the check asks of it over HTTP."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import PACK, ROOT


class ComfyServer:
    def __init__(self, comfyui: Path, python: str, base: Path, front_end_root: str | None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (base / "custom_nodes" / PACK).symlink_to(ROOT, target_is_directory=True)
        command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory",
                   str(base), "--disable-auto-launch", "--preview-method", "auto"]
        if "--database-url" in (comfyui / "comfy" / "cli_args.py").read_text():
            command += ["--database-url", "sqlite:///:memory:"]  # the default database lives in the checkout
        if front_end_root:
            command += ["--front-end-root", front_end_root]
        self.log = base / "comfyui.log"
        self.input = base / "input"
        self.process = subprocess.Popen(command, cwd=comfyui, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"ComfyUI exited with {self.process.returncode}; see {self.log}")
            try:
                self.get("/object_info/MTVLoadAudio")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(1)
        raise SystemExit(f"ComfyUI did not answer within {timeout:.0f}s; see {self.log}")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            body = response.read()
            return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, payload: dict | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        urllib.request.urlopen(urllib.request.Request(self.url + path, data, {"Content-Type": "application/json"}), timeout=30).close()

    def log_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_graph(server: ComfyServer, graph: dict, timeout: float) -> dict | str:
    """POST an API graph and wait for it: its /history entry, or what went wrong."""
    request = urllib.request.Request(server.url + "/prompt", json.dumps({"prompt": graph}).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            prompt_id = json.loads(response.read())["prompt_id"]
    except urllib.error.HTTPError as error:
        return f"refused (HTTP {error.code}): {error.read()[:600].decode(errors='replace')}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = server.get(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            if entry["status"].get("status_str") != "success":
                return json.dumps(entry["status"].get("messages"))[-600:]
            return entry
        time.sleep(1)
    return f"no result after {timeout:.0f}s"


def view_query(item: dict) -> str:
    return urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})


def output_items(entry: dict) -> list[dict]:
    """The files a /history entry's outputs name (SaveVideo lists its mp4 under 'images' in some versions)."""
    return [item for output in entry.get("outputs", {}).values() for kind in ("videos", "images", "gifs")
            for item in output.get(kind, []) or []]


def is_mp4(server: ComfyServer, item: dict) -> bool:
    data = server.get(f"/view?{view_query(item)}")
    return len(data) > 1000 and data[4:8] == b"ftyp"


def mp4_seconds(data: bytes) -> tuple[float, float | None]:
    """Seconds of picture and of sound (None: no sound stream) in an mp4."""
    import av

    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        picture = frames / float(video.average_rate)
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            return picture, None
        rate = container.streams.audio[0].rate
        return picture, sum(frame.samples for frame in container.decode(audio=0)) / rate
