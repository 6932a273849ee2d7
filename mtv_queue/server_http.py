"""HTTP to one ComfyUI server that is not trusted, through a `requests.Session`.

Every request waits at most what is left of the run's deadline; every body is read in pieces under a size limit,
the deadline checked between them (a server that drips a byte at a time cannot outlast it); a redirect is refused
(the client talks to the address it was given, nothing else); and every failure is one line naming the server.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass

import requests
import urllib3

from mtv_core.errors import GenerationError

from .deadline import Deadline
from .options import MAX_DOWNLOAD, SERVER

MAX_JSON_BYTES = 32 * 2**20
REQUEST_TIMEOUT = 30.0
READ_PIECE = 1 << 20


@dataclass
class Answer:
    status: int
    reason: str
    body: bytes  # empty when the body went into a file

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ServerHTTP:
    def __init__(self, server: str, deadline: Deadline):
        self.server, self.deadline = server, deadline
        self.session = requests.Session()
        # Bodies are counted as they arrive, so they must arrive as they are: a compressed one would grow after.
        self.session.headers["Accept-Encoding"] = "identity"

    def close(self) -> None:
        self.session.close()

    def exchange(self, method: str, path: str, **send) -> Answer:
        """One request's status and body (at most MAX_JSON_BYTES), whatever the status. `send` goes to
        requests (data, files, headers)."""
        with self._open(method, path, **send) as response:
            return Answer(response.status_code, response.reason or "", self._read(response, MAX_JSON_BYTES))

    def json(self, path: str, expect: type = dict):
        """The JSON that GET `path` answers with; refused unless the status is 2xx and it is an `expect`."""
        answer = self.exchange("GET", path)
        if not answer.ok:
            raise GenerationError(f"{self.where(path)} answered HTTP {answer.status} ({answer.reason}); is this a "
                                  "ComfyUI server with the MTV pack?")
        return self.parse(answer.body, path, expect)

    def parse(self, body: bytes, path: str, expect: type):
        try:
            value = json.loads(body)
        except ValueError:
            raise GenerationError(f"{self.where(path)} answered with something that is not JSON ({body[:60]!r}); is "
                                  "this a ComfyUI server?") from None
        if not isinstance(value, expect):
            raise GenerationError(f"{self.where(path)} answered with a {type(value).__name__} where a "
                                  f"{expect.__name__} belongs; is this a ComfyUI server?")
        return value

    def save(self, path: str, sink, limit: int) -> Answer:
        """GET `path` into `sink` (an open file), at most `limit` bytes; nothing is written unless the status is
        2xx."""
        with self._open("GET", path) as response:
            answer = Answer(response.status_code, response.reason or "", b"")
            if answer.ok:
                self._read(response, limit, sink)
            return answer

    def where(self, path: str) -> str:
        return self.server + path.split("?")[0]

    @contextmanager
    def _open(self, method: str, path: str, **send):
        timeout = self.deadline.left(REQUEST_TIMEOUT)
        try:
            response = self.session.request(method, self.server + path, stream=True, allow_redirects=False,
                                            timeout=timeout, **send)
        except (requests.RequestException, ValueError) as error:
            raise GenerationError(f"cannot reach the ComfyUI server at {self.server} ({innermost_reason(error)}); "
                                  f"start it, or pass {SERVER}") from error
        with response:
            if response.is_redirect:
                raise GenerationError(f"{self.where(path)} answered with a redirect to "
                                      f"{response.headers['Location'][:200]!r}; refused (pass {SERVER} the address "
                                      "that answers itself)")
            yield response

    def _read(self, response: requests.Response, limit: int, sink=None) -> bytes:
        """The body in pieces, at most `limit` bytes; into `sink` when given. One read returns what has arrived
        (read1), so the deadline is checked however slowly the bytes come."""
        hint = f" (raise {MAX_DOWNLOAD} if it is right)" if sink is not None else ""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise GenerationError(f"{self.server} would send {int(declared)} bytes, more than the {limit} accepted; "
                                  f"refused{hint}")
        chunks, size = [], 0
        while True:
            self.deadline.left(REQUEST_TIMEOUT)
            try:
                chunk = response.raw.read1(READ_PIECE, decode_content=False)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                raise GenerationError(f"the connection to {self.server} broke while reading ({error})") from error
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise GenerationError(f"{self.server} sent more than the {limit} bytes accepted; refused{hint}")
            if sink is None:
                chunks.append(chunk)
            else:
                sink.write(chunk)


def innermost_reason(error: BaseException) -> str:
    """What lies under a requests error ('Connection refused', 'timed out'), without urllib3's pool wording."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__ or next(
            (arg for arg in error.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        error = inner
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
