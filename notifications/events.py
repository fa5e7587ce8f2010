"""Channel-layer events of notifications, and the frames they carry to the user's sockets."""

from typing import Any

from realtime.events import encode

NOTIFICATION_CREATED = "notification.created"
NOTIFICATION_READ = "notification.read"


def notification_created(payload: dict[str, Any]) -> dict[str, Any]:
    """Event for a stored notification; ``payload`` is ``NotificationSerializer`` output.

    ``seq`` rides beside the frame so a socket drops a notification it already sent (a
    ``resume`` and the live event can cross) without decoding ``text``.
    """
    return {
        "type": NOTIFICATION_CREATED,
        "seq": payload["seq"],
        "text": encode({"type": "notification", "notification": payload}),
    }


def notification_read(*, ids: list[int] | None, unread_count: int) -> dict[str, Any]:
    """Event telling every socket of a user which notifications are now read."""
    frame: dict[str, Any] = {"type": "notification.read"}
    if ids is None:
        frame["all"] = True
    else:
        frame["ids"] = ids
    frame["unread_count"] = unread_count
    return {"type": NOTIFICATION_READ, "text": encode(frame)}
