"""A loopback stand-in for the Hugging Face hub: the two endpoints a fetch uses (the tree listing under /api/models
and /resolve/ with Range requests), files kept in git or LFS as the hub lists them, and the faults a download must
survive or refuse: a connection cut mid-file, and bytes whose sha256 is not the listed one."""

import hashlib
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from stand_in_http import StandInHandler


class StandInHub:
    def __init__(self):
        self.files = {}  # (repo, path) -> (bytes, in LFS)
        self.requests = []  # (method, repo path, Range header)
        self.cut_once = set()  # paths whose next download stops halfway through
        self.corrupt = set()  # paths served with one byte changed
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (HubHandler,), {"hub": self}))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo: str, path: str, data: bytes, lfs: bool = True) -> None:
        self.files[(repo, path)] = (data, lfs)

    def ranges(self, path: str) -> list:
        return [headers for method, requested, headers in self.requests if requested.endswith(path)]

    def entries(self, repo: str, folder: str) -> list | None:
        """The hub's tree listing of one folder (not recursive), or None when the repo does not exist."""
        if not any(r == repo for r, _ in self.files):
            return None
        prefix = f"{folder}/" if folder else ""
        listed, folders = [], set()
        for (r, path), (data, lfs) in sorted(self.files.items()):
            if r != repo or not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                folders.add(prefix + rest.split("/")[0])
                continue
            entry = {"type": "file", "path": path, "size": len(data), "oid": _blob_id(data)}
            if lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            listed.append(entry)
        return listed + [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubHandler(StandInHandler):
    hub: StandInHub

    def do_GET(self):
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/api/models/"):
            return self._tree(path[len("/api/models/"):])
        parts = path.lstrip("/").split("/", 4)
        if len(parts) != 5:  # not a file URL (the real hub answers such paths with pages or 404s)
            self.hub.requests.append(("GET", path, None))
            return self._error(404, "EntryNotFound")
        owner, name, kind, _revision, file_path = parts
        self.hub.requests.append(("GET", file_path, self.headers.get("Range")))
        if kind != "resolve" or (f"{owner}/{name}", file_path) not in self.hub.files:
            return self._error(404, "EntryNotFound")
        data, _ = self.hub.files[(f"{owner}/{name}", file_path)]
        if file_path in self.hub.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if file_path in self.hub.cut_once:
            self.hub.cut_once.discard(file_path)
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def _tree(self, rest: str):
        owner, name, _tree, _revision, *folder = rest.split("/", 4)
        entries = self.hub.entries(f"{owner}/{name}", folder[0] if folder else "")
        if entries is None:
            return self._error(404, "RepoNotFound")
        if not entries:
            return self._error(404, "EntryNotFound")
        self._send(200, entries)

    def _error(self, code: int, error_code: str):
        body = b'{"error": "not found"}'
        self.send_response(code)
        self.send_header("X-Error-Code", error_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
