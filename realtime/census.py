"""The socket census: how many sockets a user has open, on every process, per login session.

Groups are the registry: the census sends ``socket.census`` to ``user.<id>`` with a reply
channel, and every socket of the user, wherever it runs, answers with its login session.
Nothing is stored, so nothing leaks when a process dies; the price is a wait of ``CENSUS_WAIT``
seconds per look (the admin's user page).
"""

import asyncio
import contextlib
from collections import Counter
from typing import Any

from channels.layers import get_channel_layer

from .events import SOCKET_CENSUS
from .groups import user_group

CENSUS_WAIT = 0.5  # s: replies come in a Redis round trip (~1 ms); generous for a loaded host


async def reply(socket: Any, event: dict[str, Any]) -> None:
    """Answer a census with the socket's login session (the consumer's ``socket.census``)."""
    await socket.channel_layer.send(
        event["reply_to"],
        {"type": "socket.census.reply", "session_id": str(getattr(socket, "session_id", ""))},
    )


async def asocket_census(*, user_id: int, wait: float = CENSUS_WAIT) -> dict[str, int]:
    """``{login session id: open sockets}`` of the user, over every process.

    Counts the replies that arrive within ``wait`` seconds; ``{}`` without a channel layer.
    """
    layer = get_channel_layer()
    if layer is None:
        return {}
    reply_to = await layer.new_channel("herald.census.")
    counts: Counter[str] = Counter()

    async def collect() -> None:
        while True:
            reply = await layer.receive(reply_to)
            counts[reply.get("session_id", "")] += 1

    await layer.group_send(user_group(user_id), {"type": SOCKET_CENSUS, "reply_to": reply_to})
    # Always ends by cancelling a pending receive, which unsubscribes the reply channel
    # (channels-redis pub/sub layer).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), wait)
    return dict(counts)
