"""`python -m mtv_core queue` against a stand-in ComfyUI server on loopback that speaks the same
HTTP API (/prompt, /queue, /history, /view, /upload/image, /object_info) and progress stream (/ws)."""

import base64
import hashlib
import json
import struct
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from stand_in_http import StandInHandler

from mtv_core.errors import ConfigError
from mtv_queue.workflow import apply_override, load_api_workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "api" / "mtv_talking_character.json"


class FakeComfy(StandInHandler):
    received, uploads, polls = [], [], {"count": 0}
    refuse = False
    binary = [b"\x89PNG" * 3000]  # binary messages sent among the progress: by default not a ComfyUI preview
    drip = 0  # with a count, a binary message of that many bytes sent a byte every 0.2 s before the last step

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/upload/image":
            self.uploads.append(body)
            return self._send(200, {"name": "song.wav", "subfolder": "", "type": "input"})
        graph = json.loads(body)["prompt"]
        if self.refuse:
            return self._send(400, {"error": {"message": "Prompt outputs failed validation", "details": ""},
                                    "node_errors": {"1": {"class_type": "MTVModelLoader", "errors": [
                                        {"message": "Value not in list", "details": "model_name: 'x' not in [...]",
                                         "extra_info": {"input_name": "model_name"}}]}}})
        self.received.append(graph)
        return self._send(200, {"prompt_id": "abc", "number": 1, "node_errors": {}})

    def _websocket(self):
        """ComfyUI's progress stream: a fragmented text message, binary messages, a ping, the last step."""
        accept = base64.b64encode(hashlib.sha1(self.headers["Sec-WebSocket-Key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        step = lambda value: json.dumps({"type": "progress", "data": {"value": value, "max": 30, "node": "10", "prompt_id": "abc"}}).encode()
        first = step(3)
        try:
            self.wfile.write(frame(0x1, first[:10], final=False) + frame(0x0, first[10:])
                             + b"".join(frame(0x2, message) for message in self.binary))
            self._drip_a_message()
            self.wfile.write(frame(0x9, b"ping") + frame(0x1, step(30)))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client left the stream, as it should when a message is refused
        time.sleep(3)

    def _drip_a_message(self):
        if self.drip:
            self.wfile.write(bytes([0x82, 126]) + struct.pack(">H", self.drip))
            for _ in range(self.drip):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/ws":
            return self._websocket()
        if url.path == "/queue":
            return self._send(200, {"queue_running": [[0, "abc"]], "queue_pending": []})
        if url.path == "/history/abc":
            self.polls["count"] += 1
            if self.polls["count"] < 2:
                return self._send(200, {})
            failed = self.received and self.received[-1]["10"]["inputs"]["seed"] == 666
            status = {"status_str": "error" if failed else "success", "completed": not failed,
                      "messages": [["execution_error", {"node_id": "9", "node_type": "MTVApply", "exception_type": "ConfigError",
                                                         "exception_message": "MST-ControlNet Apply: input 'mtv_model' ..."}]] if failed else []}
            outputs = {"12": {"images": [{"filename": "talk_00001_.mp4", "subfolder": "mtv", "type": "output"}], "animated": [True]}}
            return self._send(200, {"abc": {"status": status, "outputs": outputs}})
        if url.path == "/view":
            query = parse_qs(url.query)
            assert query == {"filename": ["talk_00001_.mp4"], "subfolder": ["mtv"], "type": ["output"]}
            return self._send(200, b"MP4DATA", "video/mp4")
        if url.path == "/object_info/MTVDemixStems":
            return self._send(200, {"MTVDemixStems": {"input": {"required": {"audio": [], "demixer": []},
                                                                "optional": {"speaker_ranges": [], "second_speaker": []}}}})
        return self._send(404, {})


def frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    head = bytes([(0x80 if final else 0) | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    if len(payload) < 2**16:
        return head + bytes([126]) + struct.pack(">H", len(payload)) + payload
    return head + bytes([127]) + struct.pack(">Q", len(payload)) + payload


@pytest.fixture
def server():
    FakeComfy.received.clear(), FakeComfy.uploads.clear()
    FakeComfy.polls["count"], FakeComfy.refuse = 0, False
    FakeComfy.binary, FakeComfy.drip = [b"\x89PNG" * 3000], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeComfy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def queue(server, *args, tmp):
    return subprocess.run([sys.executable, "-m", "mtv_core", "queue", str(WORKFLOW), "--server", server, "--out", str(tmp), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_queue_submits_overrides_and_downloads(server, tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF....")
    result = queue(server, "--upload", str(song), "--set", "5.audio=song.wav", "--set", "MTVChainSegments.seed=7",
                   "--set", "8.scene=A cat talks.", "--set", "6.speaker_ranges=0-1:1", tmp=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    graph = FakeComfy.received[-1]
    assert graph["5"]["inputs"]["audio"] == "song.wav" and graph["10"]["inputs"]["seed"] == 7
    assert graph["8"]["inputs"]["scene"] == "A cat talks." and graph["6"]["inputs"]["speaker_ranges"] == "0-1:1"
    assert b"RIFF...." in FakeComfy.uploads[0]
    assert (tmp_path / "out" / "mtv" / "talk_00001_.mp4").read_bytes() == b"MP4DATA"  # subfolders kept apart
    assert "running" in result.stdout
    assert "MTVChainSegments (node 10): 3/30" in result.stdout and "MTVChainSegments (node 10): 30/30" in result.stdout


def test_refused_workflow_lists_node_errors(server, tmp_path):
    FakeComfy.refuse = True
    result = queue(server, tmp=tmp_path)
    assert result.returncode == 1
    assert "node 1 (MTVModelLoader), input 'model_name': Value not in list" in result.stderr


def test_failed_execution_names_the_node(server, tmp_path):
    result = queue(server, "--set", "10.seed=666", tmp=tmp_path)
    assert result.returncode == 1
    assert "node 9 (MTVApply): ConfigError: MST-ControlNet Apply" in result.stderr


def test_unreachable_server(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtv_core", "queue", str(WORKFLOW), "--server", "http://127.0.0.1:9",
                             "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1 and "cannot reach the ComfyUI server at http://127.0.0.1:9" in result.stderr


def test_without_the_queue_packages_the_command_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['websocket'] = None; from mtv_core.cli import main; "
            f"sys.exit(main(['queue', {str(WORKFLOW)!r}, '--out', {str(tmp_path)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == ("error: the queue command needs the websocket-client package, which is not "
                                     'installed; pip install "comfyui-mtv[queue]"')


def test_override_errors_are_explained():
    graph = load_api_workflow(WORKFLOW)
    with pytest.raises(ConfigError, match="node 10 \\(MTVChainSegments\\) has no input 'sead'"):
        apply_override(graph, "10.sead=3")
    with pytest.raises(ConfigError, match="no node called 'KSampler'"):
        apply_override(graph, "KSampler.seed=3")
    with pytest.raises(ConfigError, match="write NODE.INPUT=VALUE"):
        apply_override(graph, "seed=3")


def test_ui_format_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="UI-format workflow.*workflows/api/"):
        load_api_workflow(ROOT / "workflows" / "MTV Talking character.json")


JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)


def preview_message(image: bytes, image_type: int = 1, event: int = 1) -> bytes:
    """ComfyUI's binary preview message: event type, image type (1 JPEG, 2 PNG), the image."""
    return struct.pack(">II", event, image_type) + image


def test_previews_keep_the_latest_preview_and_refuse_what_is_not_one(server, tmp_path):
    from mtv_queue.progress import MAX_PREVIEW_BYTES

    older, latest = preview_message(JPEG[:-1] + b"A"), preview_message(JPEG)
    oversized = preview_message(JPEG + bytes(MAX_PREVIEW_BYTES))
    FakeComfy.binary = [older, latest, oversized, preview_message(JPEG, image_type=2), preview_message(b"GIF89a", 1),
                        preview_message(JPEG, event=3), b"\x00\x00"]
    result = queue(server, "--previews", str(tmp_path / "previews"), tmp=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == ["preview.jpg"]  # nothing else, no temp file
    assert (tmp_path / "previews" / "preview.jpg").read_bytes() == JPEG
    assert f"live preview: {tmp_path / 'previews' / 'preview.jpg'}" in result.stdout


@pytest.mark.parametrize("message", [
    preview_message(JPEG + bytes(4 * 2**20)),  # over 4 MB
    preview_message(JPEG, image_type=2),  # a JPEG declared as PNG
    preview_message(PNG, image_type=1),  # a PNG declared as JPEG
    preview_message(b"<svg onload=alert(1)>", image_type=1),  # not an image
    preview_message(JPEG, image_type=7),  # an unknown image type
    preview_message(JPEG, event=4),  # the metadata format, which this client does not ask for
    b"\x00\x00\x00\x01",  # too short
], ids=["oversized", "jpeg-as-png", "png-as-jpeg", "not-an-image", "unknown-type", "other-event", "short"])
def test_a_preview_that_is_not_what_it_says_is_refused(message):
    from mtv_queue.progress import preview_image

    assert preview_image(message) is None


def test_a_preview_is_saved_as_its_type():
    from mtv_queue.progress import preview_image

    assert preview_image(preview_message(JPEG)) == (".jpg", JPEG)
    assert preview_image(preview_message(PNG, image_type=2)) == (".png", PNG)


def test_previews_are_for_one_job(tmp_path):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("audio,prompt\nsong.wav,a\n")
    result = subprocess.run([sys.executable, "-m", "mtv_core", "queue", str(WORKFLOW), "--jobs", str(jobs), "--previews",
                             str(tmp_path), "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1 and "--previews is for one job" in result.stderr


def test_a_progress_message_over_the_limit_ends_the_stream_and_the_job_still_finishes(server, tmp_path):
    from mtv_queue.progress_stream import MAX_MESSAGE_BYTES

    FakeComfy.binary = [bytes(MAX_MESSAGE_BYTES + 1)]
    result = queue(server, tmp=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "MTVChainSegments (node 10): 3/30" in result.stdout  # sent before the oversized message
    assert "30/30" not in result.stdout  # sent after it: the stream was left, and /history told the end
    assert (tmp_path / "out" / "mtv" / "talk_00001_.mp4").read_bytes() == b"MP4DATA"


def test_a_progress_message_that_drips_cannot_hold_up_the_job(server, tmp_path):
    FakeComfy.drip = 200  # 40 s for the whole message
    began = time.monotonic()
    result = queue(server, tmp=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 20 and "30/30" not in result.stdout
    assert (tmp_path / "out" / "mtv" / "talk_00001_.mp4").read_bytes() == b"MP4DATA"
