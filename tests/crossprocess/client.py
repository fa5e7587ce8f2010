"""Real clients for the cross-process tests: WebSocket helpers on the ``websockets`` library.

Every credential style of CONTRACT §3.1 that a non-browser client can use is here: the
``Authorization`` header, the ``bearer.<jwt>`` subprotocol, ``?ticket=`` and ``?token=``.
"""

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

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
