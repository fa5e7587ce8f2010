"""Message search: ``GET /api/search/messages/?q=&room=&cursor=`` over the caller's rooms
(docs/protocol.md, "Search").

On PostgreSQL the words are matched by full-text search (the ``simple`` configuration: no
stemming, no stop words; ``websearch_to_tsquery`` syntax), served by the GIN index
``message_body_search_idx`` on ``to_tsvector('simple', body)``; on SQLite every word must occur
in the body (case-insensitive for ASCII letters, SQLite's ``LIKE``).
"""

from typing import Any

from django.contrib.postgres.search import SearchConfig, SearchQuery, SearchVectorField
from django.db import connection
from django.db.models import F, Func, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import cursor_page, error_response, errors

from . import selectors, services
from .models import Membership, Message
from .serializers import MessageSerializer

SEARCH_MAX_LENGTH = 200  # characters of ``q``, after trimming
SEARCH_CONFIG = "simple"  # the text search configuration; the index is built with the same one


class BodyVector(Func):
    """``to_tsvector('simple'::regconfig, body)``: exactly the expression of the GIN index
    ``message_body_search_idx``, so PostgreSQL can use it. Not ``SearchVector("body")``: that
    renders ``to_tsvector(…, COALESCE(body, ''))``, a different expression, which the planner
    does not match to the index (PostgreSQL docs, "Indexes on Expressions")."""

    function = "to_tsvector"
    output_field = SearchVectorField()

    def __init__(self) -> None:
        super().__init__(SearchConfig(SEARCH_CONFIG), F("body"))


def message_search(*, user_id: int, text: str, room_id: int | None = None) -> QuerySet[Message]:
    """The messages matching ``text`` in the rooms ``user_id`` belongs to (the membership is part
    of the query), only ``room_id``'s when given; tombstones (deleted messages) never match.

    Unordered (the caller paginates on ``-id``), loaded for rendering (``room`` too, and what
    ``selectors.messages_rendered`` loads: no query per message). ``text`` is already validated
    (1..200 characters, no NUL). PostgreSQL: ``websearch_to_tsquery`` semantics (``"a phrase"``,
    ``or``, ``-word``); a text without any word matches nothing. SQLite: each
    whitespace-separated word must occur in the body.

    The caller's room ids are read first and given as a list besides the membership join: with
    the join alone PostgreSQL may walk every message newest first when a word is frequent in
    other rooms but absent from the caller's (seconds on 300 000 messages); with the list it
    reads the caller's rooms only (docs/protocol.md, "Search").
    """
    if room_id is None:
        room_ids = list(
            Membership.objects.filter(user_id=user_id).values_list("room_id", flat=True)
        )
    else:
        room_ids = [room_id]
    messages = (
        selectors.messages_rendered()
        .select_related("room")
        .filter(room_id__in=room_ids, room__memberships__user_id=user_id, deleted=False)
    )
    if connection.vendor == "postgresql":
        query = SearchQuery(text, config=SEARCH_CONFIG, search_type="websearch")
        return messages.alias(body_vector=BodyVector()).filter(body_vector=query)
    for word in text.split():
        messages = messages.filter(body__icontains=word)
    return messages


@extend_schema_field(OpenApiTypes.STR)
class SearchText(serializers.Field):
    """``q``: trimmed, then 1..200 characters without NUL; anything else is code ``invalid``
    (a missing ``q`` is DRF's ``required``)."""

    default_error_messages = {
        "invalid": f"q must be 1..{SEARCH_MAX_LENGTH} characters after trimming, without NUL.",
    }

    def to_internal_value(self, data: Any) -> str:
        text = data.strip() if isinstance(data, str) else ""
        if not 1 <= len(text) <= SEARCH_MAX_LENGTH or "\x00" in text:
            self.fail("invalid")
        return text

    def to_representation(self, value: str) -> str:
        return value


class MessageSearchFilter(serializers.Serializer):
    """Query of ``GET /api/search/messages/``: ``q`` (the words), ``room`` (optional room id)."""

    q = SearchText(help_text=f"The words: 1..{SEARCH_MAX_LENGTH} characters after trimming.")
    room = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=selectors.MAX_ID,
        help_text="Only this room (one of the caller's; any other answers 404).",
    )


class MessageSearchCursor(CursorPagination):
    """Newest first by ``id``; ``?cursor=`` pages, ``page_size`` up to 100 (default 20)."""

    ordering = "-id"
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


class RoomRefSerializer(serializers.Serializer):
    """``{id, name, kind}``: the room a search result belongs to."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)


class SearchResultSerializer(serializers.Serializer):
    """One search result: ``{message: <message as history shows it>, room: {id, name, kind}}``."""

    message = MessageSerializer(source="*", read_only=True)
    room = RoomRefSerializer(read_only=True)


_RESULT = {
    "message": {
        "id": 120,
        "room": 3,
        "author": {"id": 2, "username": "alice"},
        "body": "the deploy is done",
        "created_at": "2025-01-01T12:00:00.000000Z",
        "client_id": "0b7e7dbe-4f8c-4a4b-a1d0-2f1c2c7b8e11",
    },
    "room": {"id": 3, "name": "ops", "kind": "group"},
}


class MessageSearchView(APIView):
    """``GET /api/search/messages/?q=&room=&cursor=&page_size=``: ``{next, previous, results:
    [{message, room {id, name, kind}}]}``, newest first, over the caller's rooms."""

    @extend_schema(
        tags=["search"],
        operation_id="search_messages",
        summary="Messages of the caller's rooms matching `q`, newest first (cursor pages)",
        description=(
            "PostgreSQL: full-text search of whole words (`simple` configuration, "
            '`websearch_to_tsquery` syntax: `"a phrase"`, `or`, `-word`). SQLite: every '
            "word must occur in the body. Deleted messages never match."
        ),
        parameters=[
            MessageSearchFilter,
            OpenApiParameter("cursor", str, description="From `next` or `previous`."),
            OpenApiParameter("page_size", int, description="1..100, default 20."),
        ],
        responses={
            200: OpenApiResponse(
                cursor_page(
                    "MessageSearchPage",
                    inline_serializer(
                        "MessageSearchResult",
                        fields={
                            "message": MessageSerializer(),
                            "room": RoomRefSerializer(),
                        },
                        many=True,
                    ),
                ),
                examples=[
                    OpenApiExample(
                        "page", value={"next": None, "previous": None, "results": [_RESULT]}
                    )
                ],
            ),
            **errors(400, 401),
            404: error_response(
                404,
                services.RoomNotFound.default_detail,
                "not_found",
                "`room` is not one of the caller's rooms (or does not exist), or a bad `cursor`.",
            ),
        },
    )
    def get(self, request: Request) -> Response:
        query = MessageSearchFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        room_id = query.validated_data.get("room")
        if room_id is not None and not selectors.room_is_member(
            room_id=room_id, user_id=request.user.pk
        ):
            raise exceptions.NotFound(services.RoomNotFound.default_detail)
        messages = message_search(
            user_id=request.user.pk, text=query.validated_data["q"], room_id=room_id
        )
        paginator = MessageSearchCursor()
        page = paginator.paginate_queryset(messages, request, view=self)
        return paginator.get_paginated_response(SearchResultSerializer(page, many=True).data)
