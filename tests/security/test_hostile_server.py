"""`python -m mtv_core queue` against a stand-in ComfyUI on 127.0.0.1 that lies, stalls and names files to do harm:
nothing outside --out is written, nothing is replaced, a download has a size limit, --timeout bounds everything,
and every oddity is one line on stderr (no traceback)."""

import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from stand_in_http import StandInHandler

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "api" / "mtv_demo.json"


class Hostile(StandInHandler):
    mode = "ok"
    outputs = [{"filename": "demo.mp4", "subfolder": "mtv", "type": "output"}]
    body = b"MP4DATA"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "prompt_html":
            return self._send(200, b"<html>not comfy</html>", "text/html")
        if self.mode == "prompt_500":
            return self._send(500, b"Internal Server Error", "text/plain")
        if self.mode == "prompt_redirect":
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/prompt")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._send(200, {"prompt_id": "abc", "number": 1, "node_errors": {}})

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/queue":
            return self._send(200, {"queue_running": [], "queue_pending": []})
        if url.path == "/history/abc":
            if self.mode == "history_404":
                return self._send(404, b"nope", "text/plain")
            if self.mode == "history_list":
                return self._send(200, [])
            if self.mode == "never_done":
                return self._send(200, {})
            outputs = {str(i): {"videos": [item]} for i, item in enumerate(self.outputs)}
            return self._send(200, {"abc": {"status": {"status_str": "success", "completed": True, "messages": []}, "outputs": outputs}})
        if url.path == "/view":
            query = parse_qs(url.query)
            if self.mode == "drip":
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
                return None
            return self._send(200, self.body + query["subfolder"][0].encode(), "video/mp4")
        return self._send(404, {})


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    Hostile.mode, Hostile.body = "ok", b"MP4DATA"
    Hostile.outputs = [{"filename": "demo.mp4", "subfolder": "mtv", "type": "output"}]


def queue(server, out, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "mtv_core", "queue", str(WORKFLOW), "--server", server, "--out", str(out), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def one_line_error(result, *words):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert all(word in result.stderr for word in words), result.stderr


@pytest.mark.parametrize("name", [".bashrc", "../escape.mp4", "", ".", "..", "a\x00b.mp4", "x" * 5000, 7, "sub/dir.mp4"])
def test_odd_or_hidden_output_names_are_refused_and_nothing_is_replaced(server, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".bashrc").write_text("the user's own file")
    Hostile.outputs = [{"filename": name, "subfolder": "", "type": "output"}]
    result = queue(server, out)
    one_line_error(result, "refused" if isinstance(name, str) else "non-text")
    assert (out / ".bashrc").read_text() == "the user's own file"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".bashrc"]


@pytest.mark.parametrize("subfolder", ["../../escape", "/etc", ".hidden", "a/../../b"])
def test_subfolders_cannot_climb_out(server, tmp_path, subfolder):
    Hostile.outputs = [{"filename": "demo.mp4", "subfolder": subfolder, "type": "output"}]
    one_line_error(queue(server, tmp_path / "out"), "subfolder", "refused")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_same_names_in_other_subfolders_and_existing_files_are_kept_apart(server, tmp_path):
    out = tmp_path / "out"
    (out / "one").mkdir(parents=True)
    (out / "one" / "demo.mp4").write_bytes(b"an older result")
    Hostile.outputs = [{"filename": "demo.mp4", "subfolder": folder, "type": "output"} for folder in ("one", "two", "one")]
    result = queue(server, out)
    assert result.returncode == 0, result.stderr
    assert (out / "one" / "demo.mp4").read_bytes() == b"an older result"
    assert (out / "one" / "demo (2).mp4").read_bytes() == b"MP4DATAone"
    assert (out / "one" / "demo (3).mp4").read_bytes() == b"MP4DATAone"
    assert (out / "two" / "demo.mp4").read_bytes() == b"MP4DATAtwo"


def test_a_download_over_the_limit_is_refused_and_leaves_no_partial_file(server, tmp_path):
    Hostile.body = b"x" * (3 * 2**20)
    one_line_error(queue(server, tmp_path / "out", "--max-download-mb", "1"), "more than", "refused")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_server_that_drips_bytes_cannot_outlast_the_timeout(server, tmp_path):
    Hostile.mode = "drip"
    began = time.monotonic()
    one_line_error(queue(server, tmp_path / "out", "--timeout", "4"), "--timeout has passed")
    assert time.monotonic() - began < 20
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_job_that_never_finishes_is_given_up_at_the_timeout(server, tmp_path):
    Hostile.mode = "never_done"
    began = time.monotonic()
    one_line_error(queue(server, tmp_path / "out", "--timeout", "3"), "--timeout has passed")
    assert time.monotonic() - began < 20


@pytest.mark.parametrize("mode, words", [("prompt_html", "not JSON"), ("prompt_500", "HTTP 500"),
                                         ("history_404", "HTTP 404"), ("history_list", "list where a dict belongs"),
                                         ("prompt_redirect", "redirect to 'http://127.0.0.1:9/prompt'; refused")])
def test_answers_that_are_not_comfyui_are_one_line_errors(server, tmp_path, mode, words):
    Hostile.mode = mode
    one_line_error(queue(server, tmp_path / "out"), words)


@pytest.mark.parametrize("option", ["--timeout", "--max-download-mb"])
@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_limits_must_be_positive_numbers(tmp_path, option, value):
    result = queue("http://127.0.0.1:9", tmp_path, option, value)
    one_line_error(result, option, "must be a positive number")
