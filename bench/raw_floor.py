"""The floor: the ``websockets`` library's own asyncio server running :class:`bench.hub.Hub`.

``python -m bench.raw_floor PORT``. Fan-out uses ``websockets.broadcast`` (writes without
awaiting each socket), the library's documented fast path for one frame to many sockets.
"""

import asyncio
import resource
import sys
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.hub import HELLO, Hub, uid_of

hub = Hub()


async def handler(ws: ServerConnection) -> None:
    uid = uid_of(urlsplit(ws.request.path).query if ws.request else "")

    def send(text: str) -> None:
        broadcast([ws], text)

    hub.add(uid, send)
    try:
        await ws.send(HELLO)
        async for text in ws:
            for sockets, frame in hub.handle(uid, send, str(text)):
                for to in sockets:
                    to(frame)
    finally:
        hub.remove(uid)


async def main(port: int) -> None:
    async with serve(
        handler, "127.0.0.1", port, compression=None, max_size=2**16, ping_interval=20, backlog=4096
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1])))
