"""Channel-layer events of the transport itself, and the one JSON encoder of server frames.

An event is ``{"type": "<prefix>.<name>", ...primitives}`` (primitives only: channels-redis
sends it as msgpack). Apps define their own events in their ``events`` modules and the handlers
for them in ``ws_handlers``. A frame meant for clients is encoded once, where the event is
built, and carried as ``text``, so a fan-out to N sockets costs one encoding, not N.
"""

import json
from datetime import UTC, datetime
from typing import Any

SOCKET_CLOSE = "socket.close"
SOCKET_CENSUS = "socket.census"


def iso(moment: datetime | None) -> str | None:
    """``moment`` in UTC as ISO 8601 with ``Z`` (as DRF's ``DateTimeField`` shows it with
    ``TIME_ZONE = "UTC"``), or ``None``."""
    if moment is None:
        return None
    value = moment.astimezone(UTC).isoformat()
    return value[:-6] + "Z" if value.endswith("+00:00") else value


def encode(frame: dict[str, Any]) -> str:
    """Encode a server→client frame (docs/protocol.md, "Frames") as compact JSON text."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def socket_close(*, code: int) -> dict[str, Any]:
    """Event closing every socket of the group it is sent to with close ``code``."""
    return {"type": SOCKET_CLOSE, "code": int(code)}
