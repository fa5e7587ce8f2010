"""The same :class:`bench.hub.Hub` as a bare ASGI app, for ``daphne bench.raw_asgi:application``:
what daphne itself costs, with no Django and no Channels.

HTTP: ``POST /notify/`` with ``{"recipients": [uid], "title": s}`` sends each recipient's socket
its own frame (the hub's ``each``) and answers 201 (the sustained-load workloads); any other
request answers 200 ``ok`` (the readiness probe).
"""

import json
import resource
from typing import Any

from bench.hub import HELLO, Hub, uid_of

hub = Hub()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        status = 200
        if scope["method"] == "POST" and scope["path"] == "/notify/":
            request = json.loads(body)
            for sockets, frame in hub.each(request["title"], request["recipients"]):
                for to in sockets:
                    await to(frame)
            status = 201
        await send({"type": "http.response.start", "status": status, "headers": []})
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
