"""In-process helpers: the full ASGI application through channels' ``WebsocketCommunicator``,
listeners on the channel layer, bearer-authenticated API clients. No server process."""

import asyncio
import json
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from chat import presence
from config.asgi import application

Headers = list[tuple[bytes, bytes]]


def api_client(access: str | None = None) -> APIClient:
    """A DRF test client, bearer-authenticated when given an access token."""
    client = APIClient()
    if access:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


class Sockets:
    """Communicators on the full ASGI application (``config.asgi.application``: the auth
    middleware included), opened for one test; :meth:`close` disconnects every one, which also
    re-raises any exception the application raised."""

    def __init__(self) -> None:
        self.opened: list[WebsocketCommunicator] = []

    def open(
        self,
        path: str = "/ws/",
        *,
        headers: Headers | None = None,
        subprotocols: list[str] | None = None,
    ) -> WebsocketCommunicator:
        """A communicator on ``path``, not connected yet."""
        comm = WebsocketCommunicator(
            application, path, headers=list(headers or []), subprotocols=subprotocols
        )
        self.opened.append(comm)
        return comm

    async def connect(self, access: str, timeout: float = 1) -> WebsocketCommunicator:
        """A connected communicator on ``/ws/?token=access``; its ``hello`` is left unread."""
        comm = self.open(f"/ws/?token={access}")
        connected, _ = await comm.connect(timeout=timeout)
        assert connected
        return comm

    async def socket(self, access: str) -> "Socket":
        """A :class:`Socket` on ``/ws/?token=access``, its ``hello`` read."""
        comm = await self.connect(access, timeout=5)
        hello = json.loads(await comm.receive_from(timeout=5))
        assert hello["type"] == "hello", hello
        return Socket(comm, hello)

    async def close(self) -> None:
        for comm in self.opened:
            future = comm._future
            if future is not None and future.cancelled():
                continue  # a timed-out receive_output already cancelled it
            await comm.disconnect()


async def closed_with(comm: WebsocketCommunicator, timeout: float = 2) -> int:
    """Read frames until the close (frames still in flight are skipped); return its code."""
    while True:
        message = await comm.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            return message["code"]


def _pk(room: Any) -> int:
    return room if isinstance(room, int) else room.pk


class Socket:
    """A client socket on ``/ws/?token=`` (its ``hello`` already read), speaking frames."""

    def __init__(self, communicator: WebsocketCommunicator, hello: dict[str, Any]) -> None:
        self.ws, self.hello = communicator, hello

    async def send(self, **frame: Any) -> None:
        await self.ws.send_json_to(frame)

    async def recv(self, timeout: float = 3) -> dict[str, Any]:
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def expect(self, kind: str, timeout: float = 3) -> dict[str, Any]:
        """The next frame, which must be of type ``kind``."""
        frame = await self.recv(timeout)
        assert frame["type"] == kind, frame
        return frame

    async def silent(self, seconds: float = 0.3) -> None:
        """No frame arrives within ``seconds`` (channels' ``receive_nothing``)."""
        if not await self.ws.receive_nothing(timeout=seconds, interval=0.01):
            raise AssertionError(f"unexpected frame: {await self.recv()}")

    async def subscribe(self, room: Any, since: int | None = None) -> dict[str, Any]:
        """``subscribe``; returns the ``ack`` and checks the ``presence {online, online_count}``
        after it."""
        frame: dict[str, Any] = {"type": "subscribe", "room": _pk(room), "ref": "sub"}
        if since is not None:
            frame["since"] = since
        await self.ws.send_json_to(frame)
        ack = await self.expect("ack")
        assert (ack["ref"], ack["room"]) == ("sub", _pk(room)), ack
        online = await self.expect("presence")
        assert online == {
            "type": "presence",
            "room": _pk(room),
            "online": ack["presence"],
            "online_count": ack["online_count"],
        }
        # The join goes out with the next presence flush, a window later; flush now, so that
        # a test's next frames come in the order it did things.
        await presence.aflush()
        return ack

    async def say(self, room: Any, body: str, client_id: str | None = None) -> dict[str, Any]:
        """``message.send``; returns the stored message from the ``ack``."""
        await self.send(
            type="message.send",
            room=_pk(room),
            body=body,
            client_id=client_id or str(uuid.uuid4()),
            ref="say",
        )
        ack = await self.expect("ack")
        assert ack["ref"] == "say", ack
        return ack["message"]

    async def drain(self, quiet: float = 0.5) -> list[dict[str, Any]]:
        """Every frame until none arrives for ``quiet`` seconds."""
        frames = []
        while not await self.ws.receive_nothing(timeout=quiet, interval=0.01):
            frames.append(await self.recv())
        return frames

    async def messages(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The next ``count`` frames, which must all be ``message`` frames."""
        return [(await self.expect("message", timeout))["message"] for _ in range(count)]


class Listener:
    """A channel in one group, as a socket's consumer would be; drains what reached it."""

    def __init__(self, channel_layer: Any, group: str) -> None:
        self.layer, self.group = channel_layer, group
        self.channel = async_to_sync(channel_layer.new_channel)()
        async_to_sync(channel_layer.group_add)(group, self.channel)

    async def _drain(self) -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                event = await asyncio.wait_for(self.layer.receive(self.channel), 0.02)
                event.pop("published_at", None)  # the publisher's latency stamp (config.metrics)
                received.append(event)
            except TimeoutError:
                return received

    def events(self) -> list[dict[str, Any]]:
        """Every event published to the group since the last call, in order."""
        return async_to_sync(self._drain)()

    def frames(self) -> list[dict[str, Any]]:
        """The client frames those events carry (``text``), decoded."""
        return [json.loads(event["text"]) for event in self.events()]
