"""The raw servers' shared logic: sockets by user id, rooms, and the bench's few commands.

No authentication, no storage, no channel layer: the floor that a Python WebSocket server pays
for the same frames. A client connects to ``/ws/?uid=N`` (no ``uid``: a control socket that is
never a recipient) and gets ``{"type": "hello"}``. Commands are JSON text frames:

- ``{"op": "bcast", "mark": s}``: one frame, encoded once, to every user socket (W2);
- ``{"op": "each", "mark": s, "recipients"?: [uid]}``: a distinct frame, encoded per user, to
  every user socket (W3), or only to those of ``recipients`` (``raw_asgi``'s ``POST /notify/``);
- ``{"op": "join", "room": r}``: join room ``r`` (answered with ``{"type": "ack"}``);
- ``{"op": "msg", "room": r, "body": s}``: one frame, encoded once, to every socket of the room.
"""

import json
from collections.abc import Callable
from typing import Any

Send = Callable[[str], Any]  # queues one text frame on one socket; may return an awaitable

HELLO = json.dumps({"type": "hello"})


class Hub:
    """Sockets of one process; ``send`` callables are the transport's (websockets or ASGI)."""

    def __init__(self) -> None:
        self.users: dict[int, Send] = {}
        self.rooms: dict[int, dict[int, Send]] = {}

    def add(self, uid: int | None, send: Send) -> None:
        if uid is not None:
            self.users[uid] = send

    def remove(self, uid: int | None) -> None:
        if uid is not None:
            self.users.pop(uid, None)
            for members in self.rooms.values():
                members.pop(uid, None)

    def each(self, mark: str, recipients: list[int] | None = None) -> list[tuple[list[Send], str]]:
        """A frame encoded per user, to every user socket or to those of ``recipients``."""
        users = self.users
        if recipients is not None:
            users = {u: users[u] for u in recipients if u in users}
        return [
            ([to], json.dumps({"type": "notification", "user": user, "mark": mark}))
            for user, to in users.items()
        ]

    def handle(self, uid: int | None, send: Send, text: str) -> list[tuple[list[Send], str]]:
        """The frames one command causes: ``[(sockets, text)]``."""
        command = json.loads(text)
        op = command["op"]
        if op == "bcast":
            frame = json.dumps({"type": "notification", "notification": {"title": command["mark"]}})
            return [(list(self.users.values()), frame)]
        if op == "each":
            return self.each(command["mark"], command.get("recipients"))
        if op == "join":
            self.rooms.setdefault(command["room"], {})[uid if uid is not None else -1] = send
            return [([send], json.dumps({"type": "ack", "room": command["room"]}))]
        if op == "msg":
            frame = json.dumps(
                {"type": "message", "room": command["room"], "message": {"body": command["body"]}}
            )
            return [(list(self.rooms.get(command["room"], {}).values()), frame)]
        return []


def uid_of(query: str) -> int | None:
    """The ``uid`` of a query string ``uid=N``, or ``None``."""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "uid" and value.isdigit():
            return int(value)
    return None
