"""ComfyUI's progress stream (`/ws?clientId=...`) through websocket-client, with the limits a server that is not
trusted needs: the handshake and each message are bounded in size, no read outlasts the wait it was given, and a
redirect is refused. Whatever goes wrong ends the stream (ProgressEnded); the job is then followed through
/history alone."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.parse

import websocket

MAX_MESSAGE_BYTES = 16 * 2**20  # with its frame headers; a preview image is far smaller
MAX_HANDSHAKE_BYTES = 65536


class ProgressEnded(Exception):
    """The stream closed, broke, or sent something refused."""


class _OverBudget(Exception):
    """Raised from inside websocket-client's reads when a message grows past its budget."""


class BoundedSocket:
    """A connected socket that hands websocket-client at most `budget` more bytes and none after `until` (a
    time.monotonic() value). websocket-client reads a frame whole into memory and waits as long as bytes keep
    coming; this is where both are cut short."""

    def __init__(self, connected: socket.socket):
        self._socket, self.budget, self.until = connected, 0, 0.0

    def allow(self, budget: int, seconds: float) -> None:
        self.budget, self.until = budget, time.monotonic() + seconds

    def recv(self, size: int) -> bytes:
        left = self.until - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        if self.budget <= 0:
            raise _OverBudget(f"a message over the {MAX_MESSAGE_BYTES}-byte limit")
        self._socket.settimeout(left)
        data = self._socket.recv(min(size, self.budget))
        self.budget -= len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._socket, name)


class ProgressStream:
    """The messages the server sends this client: JSON objects, and binary ones (preview images) as bytes."""

    def __init__(self, server: str, client_id: str, timeout: float):
        parts = urllib.parse.urlsplit(server)
        secure = parts.scheme == "https"
        host, port = parts.hostname, parts.port or (443 if secure else 80)
        connected = socket.create_connection((host, port), timeout=timeout)
        if secure:
            connected = ssl.create_default_context().wrap_socket(connected, server_hostname=host)
        self.socket = BoundedSocket(connected)
        self.socket.allow(MAX_HANDSHAKE_BYTES, timeout)
        address = parts.netloc.rpartition("@")[2]
        url = f"{'wss' if secure else 'ws'}://{address}{parts.path.rstrip('/')}/ws?" + \
            urllib.parse.urlencode({"clientId": client_id})
        self.websocket = websocket.WebSocket(skip_utf8_validation=True)  # a text message that is not UTF-8 is skipped
        self.websocket.connect(url, socket=self.socket, redirect_limit=0)  # closes the socket if it fails
        self.socket.budget = MAX_MESSAGE_BYTES

    @classmethod
    def open(cls, server: str, client_id: str, timeout: float) -> ProgressStream | None:
        """The stream, or None when the server offers none (older or proxied servers)."""
        try:
            return cls(server, client_id, timeout)
        except (OSError, ValueError, websocket.WebSocketException, _OverBudget):
            return None

    def receive(self, timeout: float) -> dict | bytes | None:
        """The next message: a JSON object (a text message that holds one) or a binary message's bytes; None when
        none came whole within `timeout` seconds, or a text message held no JSON object. A message cut short by
        the wait goes on arriving at the next call."""
        self.socket.until = time.monotonic() + max(timeout, 0.01)
        try:
            opcode, data = self.websocket.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException, _OverBudget) as error:
            raise ProgressEnded(str(error)) from error
        self.socket.budget = MAX_MESSAGE_BYTES
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ProgressEnded("the server closed the websocket")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return data
        try:
            message = json.loads(data)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        self.websocket.shutdown()
