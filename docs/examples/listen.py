"""Listen on Herald's socket as a user, forever: ``python listen.py URL USER PASSWORD``.

What a well-behaved client does (docs/protocol.md, "WebSocket /ws/"; docs/security.md):

- authenticates with the ``Authorization`` header (native client; browsers use a ticket or the
  ``bearer.<jwt>`` subprotocol);
- on ``auth.expiring``, refreshes the token pair over REST and sends ``auth.refresh`` with the
  new access token, so the socket stays open past the access token's lifetime;
- remembers the highest notification ``seq`` it saw and, after every (re)connect, sends
  ``resume {notifications_since: seq}``: nothing published while it was away is lost;
- reconnects with capped exponential backoff on 1001/1006/1011/4503, logs in again on 4401,
  and stops on 4403.

Prints one JSON line per notification. Needs ``pip install httpx websockets``.
"""

import asyncio
import json
import random
import sys

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


class Listener:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = self.base_url.replace("http", "ws", 1) + "/ws/"
        self.credentials = {"username": username, "password": password}
        self.access = self.refresh = ""
        self.last_seq = 0  # the resume cursor

    async def login(self, http: httpx.AsyncClient) -> None:
        answer = await http.post("/api/auth/token/", json=self.credentials)
        answer.raise_for_status()
        self.access, self.refresh = answer.json()["access"], answer.json()["refresh"]

    async def rotate(self, http: httpx.AsyncClient) -> None:
        answer = await http.post("/api/auth/token/refresh/", json={"refresh": self.refresh})
        if answer.status_code == 401:  # session revoked or refresh expired: log in again
            await self.login(http)
            return
        answer.raise_for_status()
        self.access, self.refresh = answer.json()["access"], answer.json()["refresh"]

    async def session(self, http: httpx.AsyncClient) -> int | None:
        """One connection, until it closes; its close code."""
        headers = {"Authorization": f"Bearer {self.access}"}
        async with connect(self.ws_url, additional_headers=headers) as ws:
            try:
                hello = json.loads(await ws.recv())
                assert hello["type"] == "hello", hello
                print(f"connected {hello['connection_id']}", file=sys.stderr, flush=True)
                await ws.send(json.dumps({"type": "resume", "notifications_since": self.last_seq}))
                async for text in ws:
                    frame = json.loads(text)
                    if frame["type"] == "notification":
                        seq = frame["notification"]["seq"]
                        if seq > self.last_seq:
                            self.last_seq = seq
                            print(json.dumps(frame["notification"]), flush=True)
                    elif frame["type"] == "auth.expiring":
                        await self.rotate(http)
                        await ws.send(json.dumps({"type": "auth.refresh", "token": self.access}))
                        print("refreshed", file=sys.stderr, flush=True)
            except ConnectionClosed:
                pass
        return ws.close_code

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            await self.login(http)
            backoff = 0.5
            while True:
                try:
                    code = await self.session(http)
                except (OSError, ConnectionClosed):
                    code = 1006
                if code == 4403:
                    raise SystemExit("forbidden (4403): stopping")
                if code == 4401:
                    await self.login(http)
                backoff = min(30.0, backoff * 2) if code != 1000 else 0.5
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311


if __name__ == "__main__":
    asyncio.run(Listener(*sys.argv[1:4]).run())
