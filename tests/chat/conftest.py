"""Fixtures of the chat suite: rooms, sockets through the full ASGI app, API clients."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from config.asgi import application
from chat import presence, services
from chat.models import Room


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
        """``subscribe``; returns the ``ack`` and checks the ``presence {online}`` after it."""
        frame: dict[str, Any] = {"type": "subscribe", "room": _pk(room), "ref": "sub"}
        if since is not None:
            frame["since"] = since
        await self.ws.send_json_to(frame)
        ack = await self.expect("ack")
        assert (ack["ref"], ack["room"]) == ("sub", _pk(room)), ack
        online = await self.expect("presence")
        assert online == {"type": "presence", "room": _pk(room), "online": ack["presence"]}
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


def _pk(room: Any) -> int:
    return room if isinstance(room, int) else room.pk


@pytest.fixture
def layer() -> Iterator[Any]:
    """The in-memory channel layer, empty before and after the test."""
    channel_layer = get_channel_layer()
    async_to_sync(channel_layer.flush)()
    yield channel_layer
    async_to_sync(channel_layer.flush)()


@pytest.fixture
async def open_socket(layer: Any, login: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """``await open_socket(user)`` → a :class:`Socket` of a new login session of ``user``.

    Every socket is disconnected at teardown, then this loop's presence state is closed.
    """
    opened: list[WebsocketCommunicator] = []

    async def _open(user: Any) -> Socket:
        _, tokens = await database_sync_to_async(login)(user)
        communicator = WebsocketCommunicator(application, f"/ws/?token={tokens['access']}")
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        opened.append(communicator)
        hello = json.loads(await communicator.receive_from(timeout=5))
        assert hello["type"] == "hello", hello
        return Socket(communicator, hello)

    yield _open
    for communicator in opened:
        await communicator.disconnect()
    await presence.aclose()


@pytest.fixture
def make_room(db: Any) -> Callable[..., Room]:
    """``make_room(owner, *members, name="general")`` → a group room owned by ``owner``."""

    def _make(owner: Any, *members: Any, name: str = "general") -> Room:
        return services.room_create(
            creator_id=owner.pk, name=name, member_ids=[m.pk for m in members]
        )

    return _make


@pytest.fixture
def carol(make_user: Callable[..., Any]) -> Any:
    return make_user(username="carol")


@pytest.fixture
def as_user(login: Callable[..., Any]) -> Callable[[Any], APIClient]:
    """``as_user(user)`` → an API client bearing a fresh access token of ``user``."""

    def _as(user: Any) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {login(user)[1]['access']}")
        return client

    return _as


@pytest.fixture
def roomy(settings: Any) -> None:
    """A rate limit high enough to send many frames in a row without tripping it."""
    settings.HERALD = {**settings.HERALD, "WS_RATE": 1000.0, "WS_BURST": 1000}


def send_as(user: Any, room: Room, body: str) -> int:
    """Store (and publish) a message of ``user`` through the service; its id."""
    return services.room_message_send(room_id=room.pk, author_id=user.pk, body=body).pk


class Listener:
    """A channel in one group, as a socket's consumer would be; drains what reached it."""

    def __init__(self, channel_layer: Any, group: str) -> None:
        self.layer = channel_layer
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


@pytest.fixture
def listen(layer: Any) -> Callable[[str], Listener]:
    """``listen(group)`` → a :class:`Listener` on that channel-layer group."""
    return lambda group: Listener(layer, group)
