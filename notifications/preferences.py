"""A user's notification preferences: reads, the one write, and the rules they decide
(docs/protocol.md, "Preferences").

- ``push``: Web Push to the user's subscribed browsers when they have no open socket.
- ``email_digest``: ``off``, ``hourly`` or ``daily`` (``notifications.digests``).
- ``quiet_hours``: ``None`` or ``{start: "HH:MM", end: "HH:MM", timezone: IANA name}``; no push
  while the user's wall clock is in ``[start, end)`` (over midnight when ``end < start``).
- ``muted_rooms``: room ids; a muted room sends the user no mention notification and no push.

A user without a stored row has the defaults (:data:`DEFAULTS`); the row is written on the first
change.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.db import transaction

from .models import DigestChoice, Preferences

DEFAULTS: dict[str, Any] = {
    "push": True,
    "email_digest": DigestChoice.DAILY.value,
    "quiet_hours": None,
    "muted_rooms": [],
}


class PreferenceError(ValueError):
    """A preference change that cannot be stored: ``field`` names it, ``code`` is the API's
    error code (``invalid``)."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.field, self.code = field, code


@dataclass(frozen=True)
class QuietHours:
    """``[start, end)`` of wall-clock time in ``zone`` (an IANA time zone name)."""

    start: time
    end: time
    zone: str

    def contains(self, moment: datetime) -> bool:
        """Whether the aware datetime ``moment`` falls in the quiet hours."""
        local = moment.astimezone(ZoneInfo(self.zone)).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # over midnight

    def as_dict(self) -> dict[str, str]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "timezone": self.zone,
        }


def _room_model() -> Any:
    # The room model through our own relation: notifications never imports chat.
    return Preferences._meta.get_field("muted_rooms").related_model


def _stored(user_id: int) -> Preferences | None:
    return Preferences.objects.filter(user_id=user_id).first()


def quiet_hours_of(prefs: Preferences | None) -> QuietHours | None:
    """The stored quiet hours of ``prefs``, or ``None``."""
    if prefs is None or prefs.quiet_start is None or prefs.quiet_end is None:
        return None
    return QuietHours(prefs.quiet_start, prefs.quiet_end, prefs.quiet_timezone or "UTC")


def preferences_get(*, user_id: int) -> dict[str, Any]:
    """The user's preferences as the API shows them: ``{push, email_digest, quiet_hours,
    muted_rooms}`` (ids of muted rooms the user is still a member of, ascending)."""
    prefs = _stored(user_id)
    if prefs is None:
        return {**DEFAULTS, "muted_rooms": []}
    quiet = quiet_hours_of(prefs)
    return {
        "push": prefs.push,
        "email_digest": prefs.email_digest,
        "quiet_hours": quiet.as_dict() if quiet else None,
        # Only rooms the user is still in: one they left would make the next PATCH of the
        # list they read fail (a muted room must be theirs).
        "muted_rooms": sorted(
            prefs.muted_rooms.filter(members=user_id).values_list("pk", flat=True)
        ),
    }


_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _parse_time(field: str, value: Any) -> time:
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise PreferenceError(field, f"{field} must be a 24 h time as HH:MM (00:00..23:59)")
    return time(int(value[:2]), int(value[3:]))


def parse_quiet_hours(value: Any) -> QuietHours | None:
    """``None`` or ``{start, end, timezone}`` → :class:`QuietHours`. Raises
    :class:`PreferenceError` for another shape, a time not ``HH:MM`` (24 h), a zone not in the
    IANA database (``zoneinfo.available_timezones()``) or ``start == end``."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"start", "end", "timezone"}:
        raise PreferenceError("quiet_hours", "quiet_hours must be null or {start, end, timezone}")
    start = _parse_time("quiet_hours.start", value["start"])
    end = _parse_time("quiet_hours.end", value["end"])
    zone = value["timezone"]
    if not isinstance(zone, str) or zone not in _zones():
        raise PreferenceError(
            "quiet_hours.timezone", "quiet_hours.timezone must be an IANA time zone name"
        )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PreferenceError(
            "quiet_hours.timezone", "quiet_hours.timezone must be an IANA time zone name"
        ) from None
    if start == end:
        raise PreferenceError("quiet_hours", "quiet_hours.start and end must differ")
    return QuietHours(start, end, zone)


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def preferences_update(*, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``changes`` (any of ``push``, ``email_digest``, ``quiet_hours``, ``muted_rooms``;
    already type-checked) and return the preferences as :func:`preferences_get` shows them.

    Raises :class:`PreferenceError` for quiet hours that do not parse (:func:`parse_quiet_hours`)
    or a muted room that does not exist or the user is not a member of (code ``invalid``, the
    room ids named). Nothing is stored when it raises.
    """
    quiet = parse_quiet_hours(changes["quiet_hours"]) if "quiet_hours" in changes else None
    rooms: list[int] | None = None
    if "muted_rooms" in changes:
        rooms = sorted(set(changes["muted_rooms"]))
        mine = set(
            _room_model().objects.filter(pk__in=rooms, members=user_id).values_list("pk", flat=True)
        )
        if missing := [pk for pk in rooms if pk not in mine]:
            raise PreferenceError("muted_rooms", f"not a room you are a member of: {missing[:20]}")
    with transaction.atomic():
        prefs, _ = Preferences.objects.select_for_update().get_or_create(user_id=user_id)
        if "push" in changes:
            prefs.push = bool(changes["push"])
        if "email_digest" in changes:
            prefs.email_digest = changes["email_digest"]
        if "quiet_hours" in changes:
            prefs.quiet_start = quiet.start if quiet else None
            prefs.quiet_end = quiet.end if quiet else None
            prefs.quiet_timezone = quiet.zone if quiet else ""
        prefs.save()
        if rooms is not None:
            prefs.muted_rooms.set(rooms)
    return preferences_get(user_id=user_id)


def room_mute_set(*, user_id: int, room_id: int, muted: bool) -> dict[str, Any]:
    """Mute or unmute one room of the user (the room menu's "Mute"); the preferences after.
    Raises :class:`PreferenceError` when the user is not a member of the room."""
    current = set(preferences_get(user_id=user_id)["muted_rooms"])
    wanted = current | {room_id} if muted else current - {room_id}
    return preferences_update(user_id=user_id, changes={"muted_rooms": sorted(wanted)})


def email_digest_of(user_id: int) -> str:
    """``off``, ``hourly`` or ``daily``: how often the user wants unread notifications
    emailed."""
    value = Preferences.objects.filter(user_id=user_id).values_list("email_digest", flat=True)
    return value.first() or DEFAULTS["email_digest"]


def email_digest_off(user_id: int) -> None:
    """Turn the user's email digests off (the digest's one-click unsubscribe link)."""
    Preferences.objects.update_or_create(
        user_id=user_id, defaults={"email_digest": DigestChoice.OFF}
    )


def muted_user_ids(*, room_id: int, user_ids: Iterable[int]) -> set[int]:
    """Which of ``user_ids`` muted room ``room_id``: one query. A mention in a muted room
    notifies nobody in this set."""
    ids = list(user_ids)
    if not ids:
        return set()
    through = Preferences.muted_rooms.through
    return set(
        through.objects.filter(room_id=room_id, preferences_id__in=ids).values_list(
            "preferences_id", flat=True
        )
    )


def push_wanted(prefs: Preferences | None, *, room_id: int | None, now: datetime) -> bool:
    """Whether a notification (about ``room_id``, if any) may be pushed to the owner of
    ``prefs`` at ``now``: push on, not in quiet hours, the room not muted. ``prefs`` must come
    with ``muted_rooms`` prefetched when ``room_id`` is given."""
    if prefs is None:
        return True
    if not prefs.push:
        return False
    quiet = quiet_hours_of(prefs)
    if quiet is not None and quiet.contains(now):
        return False
    if room_id is not None:
        return all(room.pk != room_id for room in prefs.muted_rooms.all())
    return True
