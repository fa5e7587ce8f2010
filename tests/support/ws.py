"""Real WebSocket clients of a daphne process: the ``websockets`` library, and raw TCP sockets.

Every credential style a non-browser client can use is here (docs/security.md, "WebSocket
credentials"): the ``Authorization`` header, the ``bearer.<jwt>`` subprotocol, ``?ticket=`` and
``?token=``. The raw clients complete the handshake by hand, to misbehave below the library:
never read (:func:`raw_ws`), never answer a ping (:class:`DeadPeerProbe`).
"""

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection as SyncClientConnection

HANDSHAKE_TIMEOUT = 30.0  # s: generous, the machine may be loaded (2 cores)


async def open_socket(
    ws_url: str,
    *,
    how: str = "header",
    access: str = "",
    ticket: str = "",
    timeout: float = HANDSHAKE_TIMEOUT,
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open ``ws_url`` authenticated ``how`` (``header``, ``subprotocol``, ``query``, ``ticket``).

    Returns the connection and its first frame, which must be ``hello``. The client sends no
    keepalive pings of its own (``ping_interval=None``): only the server's heartbeat flows.
    """
    headers: dict[str, str] = {}
    subprotocols: list[str] = []
    url = ws_url
    if how == "header":
        headers["Authorization"] = f"Bearer {access}"
    elif how == "subprotocol":
        subprotocols = ["herald.v1", f"bearer.{access}"]
    elif how == "query":
        url = f"{ws_url}?{urlencode({'token': access})}"
    elif how == "ticket":
        url = f"{ws_url}?{urlencode({'ticket': ticket})}"
    else:
        raise ValueError(how)
    ws = await connect(
        url,
        additional_headers=headers,
        subprotocols=subprotocols or None,  # type: ignore[arg-type]
        open_timeout=timeout,
        ping_interval=None,
        close_timeout=10,
        max_queue=None,
    )
    try:
        hello = await recv_frame(ws, timeout)
    except BaseException:
        await ws.close()
        raise
    assert hello["type"] == "hello", hello
    if how == "subprotocol":
        assert ws.subprotocol == "herald.v1"
    return ws, hello


async def recv_frame(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next text frame, decoded; ``TimeoutError`` after ``timeout`` seconds."""
    text = await asyncio.wait_for(ws.recv(), timeout)
    frame = json.loads(text)
    assert isinstance(frame, dict), frame
    assert "type" in frame, frame
    return frame


async def recv_timed(ws: ClientConnection, timeout: float) -> tuple[dict[str, Any], float]:
    """``(next frame, time.perf_counter() when it arrived)``."""
    frame = await recv_frame(ws, timeout)
    return frame, time.perf_counter()


async def assert_silent(ws: ClientConnection, seconds: float = 1.0) -> None:
    """Fail if ``ws`` receives any frame within ``seconds`` (channels' ``receive_nothing``)."""
    try:
        text = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"expected no frame within {seconds} s, got {text!r}")


async def close_code(ws: ClientConnection, timeout: float) -> int | None:
    """Wait up to ``timeout`` s for the server to close ``ws``; its close code (``None``: none).

    Frames that arrive before the close are skipped; a socket still open after ``timeout``
    raises ``TimeoutError``.
    """
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code


# Raw sockets --------------------------------------------------------------------------------------


def raw_ws(port: int, access: str, *, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """A raw WebSocket handshake (Bearer header) on a plain TCP socket; (socket, bytes already
    read after the 101 answer). ``rcvbuf`` shrinks the kernel's receive buffer first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /ws/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {access}\r\n\r\n"
        ).encode()
    )
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), f"handshake refused: {head[:200]!r}"
    return sock, rest


def parse_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """``(opcode, payload, rest)`` of the first complete server frame (unmasked, RFC 6455 §5.2),
    or ``None`` while ``buffer`` holds less than one frame."""
    if len(buffer) < 2:
        return None
    opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,), offset = struct.unpack("!H", buffer[2:4]), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,), offset = struct.unpack("!Q", buffer[2:10]), 10
    if len(buffer) < offset + length:
        return None
    return opcode, buffer[offset : offset + length], buffer[offset + length :]


# Probes: sockets opened once and checked after a while --------------------------------------------


class PingRecorder(SyncClientConnection):
    """websockets' sync client, noting when each server ping and each data frame arrives.

    ``process_event`` is websockets' documented override point for subclasses
    (``create_connection=``); the pong is still sent by the protocol layer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings: list[float] = []
        self.data_frames: list[float] = []

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame):
            if event.opcode is Opcode.PING:
                self.pings.append(time.monotonic())
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.data_frames.append(time.monotonic())
        super().process_event(event)


@dataclass
class IdleProbe:
    """A socket that sends nothing after its ``hello``."""

    ws: PingRecorder
    hello: dict[str, Any]
    opened_at: float  # time.monotonic()


@dataclass
class DeadPeerProbe:
    """A raw WebSocket client that completes the handshake, then never answers a ping.

    A reader thread parses the server's frames and notes when each ping arrives and when the
    server dropped the TCP connection.
    """

    sock: socket.socket
    opened_at: float
    frames: list[tuple[float, int, bytes]] = field(default_factory=list)
    dropped_at: float | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, port: int, access: str) -> "DeadPeerProbe":
        sock, rest = raw_ws(port, access)
        probe = cls(sock=sock, opened_at=time.monotonic())
        sock.settimeout(None)
        threading.Thread(target=probe._read, args=(rest,), daemon=True).start()
        return probe

    def _read(self, buffer: bytes) -> None:
        try:
            while True:
                while (parsed := parse_frame(buffer)) is not None:
                    opcode, payload, buffer = parsed
                    self.frames.append((time.monotonic(), opcode, payload))
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
        except OSError as error:  # a reset counts as a drop too
            self.error = repr(error)
        self.dropped_at = time.monotonic()
        self.done.set()

    def pings(self) -> list[float]:
        return [at for at, opcode, _ in self.frames if opcode == Opcode.PING.value]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
