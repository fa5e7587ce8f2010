"""The one shape of a notification, shared by REST and the WebSocket (both serialize with
:class:`NotificationSerializer`, never a second hand-written dict), and the bodies of the REST
calls that create and read notifications."""

import json
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from realtime.events import iso
from realtime.text import validate_text

from .models import Notification

MAX_RECIPIENTS = 10_000
MAX_DATA_BYTES = 16_384
MAX_DATA_DEPTH = 32


def _data_problem(value: Any) -> tuple[str, str] | None:
    """``(message, code)`` saying why ``data`` cannot be stored and sent, or ``None``.

    Walked without recursion, before anything encodes it: data nested deeper than
    ``MAX_DATA_DEPTH`` makes ``json.dumps`` hit the recursion limit further down the stack (a
    500); PostgreSQL's ``jsonb`` refuses NUL characters; an unpaired surrogate (``"\\ud800"`` in
    the request body) has no UTF-8 encoding, so the list and the WebSocket frame carrying it
    would fail for every recipient (RFC 7493 §2.1 forbids it in I-JSON).
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DATA_DEPTH:
                return f"data must nest at most {MAX_DATA_DEPTH} levels", "too_deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if "\x00" in item:
                return "data must not contain NUL characters", "invalid_characters"
            try:
                item.encode()
            except UnicodeEncodeError:
                return "data must not contain unpaired surrogates", "invalid_characters"
    return None


class NotificationSerializer(serializers.ModelSerializer):
    """``{id, seq, title, body, data, created_at, read_at}`` (docs/protocol.md, "HTTP API")."""

    class Meta:
        model = Notification
        fields = ["id", "seq", "title", "body", "data", "created_at", "read_at"]
        read_only_fields = fields


def notification_payload(notification: Notification) -> dict[str, Any]:
    """One notification as primitives: what ``NotificationSerializer`` gives, built by hand
    because it runs for every notification created and replayed (a 1000-recipient ``POST``
    spent more in DRF's serializer than in its inserts; ``tests/notifications/test_services.py``
    checks they agree)."""
    return {
        "id": notification.pk,
        "seq": notification.seq,
        "title": notification.title,
        "body": notification.body,
        "data": notification.data,
        "created_at": iso(notification.created_at),
        "read_at": iso(notification.read_at),
    }


class NotificationCreateSerializer(serializers.Serializer):
    """Body of ``POST /api/notifications/`` (docs/protocol.md, "HTTP API").

    ``recipients`` are 1..10 000 existing user ids (duplicates are sent once); ``title`` and
    ``body`` hold no control characters (``realtime.text``); ``data`` is a JSON object of at
    most 16 KiB encoded, without NUL (PostgreSQL's ``jsonb`` refuses it).
    """

    recipients = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        min_length=1,
        max_length=MAX_RECIPIENTS,
    )
    title = serializers.CharField(max_length=200, validators=[validate_text])
    body = serializers.CharField(
        max_length=10_000,
        allow_blank=True,
        required=False,
        default="",
        validators=[validate_text],
    )
    data = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=128, required=False, allow_null=True)

    def validate_data(self, value: dict[str, Any]) -> dict[str, Any]:
        if problem := _data_problem(value):
            raise serializers.ValidationError(problem[0], code=problem[1])
        if len(json.dumps(value)) > MAX_DATA_BYTES:
            raise serializers.ValidationError(
                f"data must encode to at most {MAX_DATA_BYTES} bytes", code="too_large"
            )
        return value

    def validate_recipients(self, value: list[int]) -> list[int]:
        unique = sorted(set(value))
        found = set(get_user_model().objects.filter(pk__in=unique).values_list("pk", flat=True))
        missing = [pk for pk in unique if pk not in found]
        if missing:
            raise serializers.ValidationError(
                f"unknown user ids: {missing[:20]}", code="unknown_recipients"
            )
        return unique


class NotificationCreateResultSerializer(serializers.Serializer):
    """Answer of ``POST /api/notifications/``: ``{count, ids}``."""

    count = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField())


class NotificationReadSerializer(serializers.Serializer):
    """Body of a ``notification.read`` WebSocket command: ``ids`` or ``all: true``."""

    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False)
    all = serializers.BooleanField(required=False, default=False)


class UnreadCountSerializer(serializers.Serializer):
    """``{unread_count}``."""

    unread_count = serializers.IntegerField()
