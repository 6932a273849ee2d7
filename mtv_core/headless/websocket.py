"""A small reader of ComfyUI's `/ws` progress messages (RFC 6455, client side), standard library only.

Only what following a job needs: the opening handshake, unmasked server frames (text, binary, ping, close, and
fragments), masked pongs back. Text messages are JSON; binary ones (preview images) are handed over as bytes,
unread. A frame longer than MAX_FRAME closes the reader instead of filling memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FRAME = 16 * 2**20
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


class WebSocketClosed(Exception):
    """The connection ended or sent something this reader does not accept."""


class WebSocketReader:
    def __init__(self, server: str, client_id: str, timeout: float):
        parts = urllib.parse.urlsplit(server)
        secure = parts.scheme == "https"
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if secure else 80)
        path = f"{parts.path.rstrip('/')}/ws?clientId={urllib.parse.quote(client_id)}"
        connection = socket.create_connection((host, port), timeout=timeout)
        self.socket = ssl.create_default_context().wrap_socket(connection, server_hostname=host) if secure else connection
        self.buffer = b""
        self.fragments: list[bytes] = []
        self._handshake(host, port, path, time.monotonic() + timeout)

    def _handshake(self, host: str, port: int, path: str, deadline: float) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.socket.sendall(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > 65536 or time.monotonic() > deadline:
                raise WebSocketClosed("the server's handshake answer is too long or too slow")
            self._receive_more(8192)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if " 101 " not in lines[0] + " " or headers.get("sec-websocket-accept") != expected:
            raise WebSocketClosed(f"the server did not open a websocket ({lines[0][:80]!r})")

    def _receive_more(self, limit: int) -> None:
        data = self.socket.recv(limit)
        if not data:
            raise WebSocketClosed("the server closed the connection")
        self.buffer += data

    def receive(self, timeout: float) -> dict | bytes | None:
        """The next message: a JSON object (a text message that holds one) or the payload of a binary message; None
        when none came within `timeout` seconds."""
        self.socket.settimeout(max(timeout, 0.01))
        try:
            while True:
                frame = self._next_frame()
                if frame is None:
                    self._receive_more(65536)
                    continue
                message = self._handle(*frame)
                if message is not None:
                    return message
        except (socket.timeout, TimeoutError):
            return None
        except (OSError, ssl.SSLError) as error:
            raise WebSocketClosed(str(error)) from error

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        """(final, opcode, payload) of the frame at the start of the buffer, or None until it has arrived whole."""
        if len(self.buffer) < 2:
            return None
        first, second = self.buffer[0], self.buffer[1]
        if second & 0x80:
            raise WebSocketClosed("the server masked its frames, which a server must not do")
        length, start = second & 0x7F, 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            length, start = struct.unpack(">H", self.buffer[2:4])[0], 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            length, start = struct.unpack(">Q", self.buffer[2:10])[0], 10
        if length > MAX_FRAME or sum(map(len, self.fragments)) + length > MAX_FRAME:
            raise WebSocketClosed(f"a {length}-byte frame is over the {MAX_FRAME}-byte limit")
        if len(self.buffer) < start + length:
            return None
        payload, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
        return bool(first & 0x80), first & 0x0F, payload

    def _handle(self, final: bool, opcode: int, payload: bytes) -> dict | bytes | None:
        if opcode == PING:
            self._send(PONG, payload)
        elif opcode == CLOSE:
            raise WebSocketClosed("the server closed the websocket")
        elif opcode in (TEXT, BINARY, CONTINUATION):
            self.fragments.append(bytes([opcode]) + payload if opcode != CONTINUATION else payload)
            if final:
                whole, self.fragments = b"".join(self.fragments), []
                if whole[:1] == bytes([BINARY]):
                    return whole[1:]
                if whole[:1] == bytes([TEXT]):
                    try:
                        message = json.loads(whole[1:])
                    except ValueError:
                        return None
                    return message if isinstance(message, dict) else None
        return None

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload[:125]))
        self.socket.sendall(bytes([0x80 | opcode, 0x80 | len(masked)]) + mask + masked)

    def close(self) -> None:
        try:
            self.socket.close()
        except OSError:
            pass
