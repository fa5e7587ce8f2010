"""The same :class:`bench.hub.Hub` as a bare ASGI app, for ``daphne bench.raw_asgi:application``:
what daphne itself costs, with no Django and no Channels."""

import resource
from typing import Any

from bench.hub import HELLO, Hub, uid_of

hub = Hub()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":  # readiness probe
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    uid = uid_of(scope.get("query_string", b"").decode())

    # A send callable per socket; called from other sockets' handlers, in the same loop.
    async def put(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
            hub.add(uid, put)
            await put(HELLO)
        elif kind == "websocket.receive":
            for sockets, frame in hub.handle(uid, put, message.get("text") or ""):
                for to in sockets:
                    await to(frame)
        elif kind == "websocket.disconnect":
            hub.remove(uid)
            return
