"""``/healthz`` (process up) and ``/readyz`` (database and channel layer round trip):
docs/protocol.md, "HTTP API"; docs/deployment.md, section 9."""

import asyncio
import logging
import os
import socket
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)
_TIMEOUT = 2.0  # s: readiness must answer within this even when a dependency hangs


def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process serves requests."""
    return JsonResponse({"status": "ok"})


def _check_db() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as error:
        logger.warning("readyz: database check failed: %s", type(error).__name__)
        return "error"


# One channel per process, reused: a fresh channel per check would stay subscribed on the
# pub/sub layer (it unsubscribes only on cancellation). The lock keeps two checks from taking
# each other's message.
_CHANNEL = f"herald.readyz.{socket.gethostname()}.{os.getpid()}"
_lock = asyncio.Lock()


async def _check_layer() -> str:
    layer = get_channel_layer()

    async def receive(nonce: str) -> None:
        while (await layer.receive(_CHANNEL)).get("nonce") != nonce:
            pass  # a reply to an earlier check that gave up

    async def round_trip() -> None:
        # Sent again until it arrives: the pub/sub layer subscribes inside ``receive``, so a
        # first send can go out before anyone listens.
        nonce = uuid.uuid4().hex
        async with _lock:
            receiver = asyncio.ensure_future(receive(nonce))
            try:
                while not receiver.done():
                    await layer.send(_CHANNEL, {"type": "readyz.ping", "nonce": nonce})
                    await asyncio.wait({receiver}, timeout=0.2)
                receiver.result()
            finally:
                receiver.cancel()

    try:
        await asyncio.wait_for(round_trip(), _TIMEOUT)
        return "ok"
    except Exception as error:
        logger.warning("readyz: channel layer check failed: %s", type(error).__name__)
        return "error"


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 ``{db: "ok", channel_layer: "ok"}``, or 503 with the failed part set to ``"error"``."""
    db = await asyncio.wait_for(sync_to_async(_check_db)(), _TIMEOUT * 2)
    result = {"db": db, "channel_layer": await _check_layer()}
    status = 200 if all(v == "ok" for v in result.values()) else 503
    return JsonResponse(result, status=status)
