"""The chat REST API: rooms, their members and their messages (docs/protocol.md)."""

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from accounts.permissions import Scope
from config.errors import InvalidRequest
from config.openapi import AUTHENTICATED, cursor_page, error_response, errors

from . import selectors, services
from .models import Room
from .serializers import (
    MemberAddSerializer,
    MemberSerializer,
    MessageCreateSerializer,
    MessageEditSerializer,
    MessageListFilter,
    MessageSerializer,
    ReactionBodySerializer,
    ReactionsSerializer,
    RoomCreateSerializer,
    RoomSerializer,
    RoomUpdateSerializer,
    message_payload,
)

_MESSAGE = {
    "id": 120,
    "room": 3,
    "author": {"id": 2, "username": "alice"},
    "body": "hello",
    "created_at": "2025-01-01T12:00:00.000000Z",
    "client_id": "0b7e7dbe-4f8c-4a4b-a1d0-2f1c2c7b8e11",
    "seq": 57,
    "edited_at": None,
    "deleted": False,
    "reactions": [{"emoji": "👍", "count": 1, "users": [3]}],
    "reply_to": {
        "id": 118,
        "author": {"id": 3, "username": "bob"},
        "excerpt": "anyone there?",
        "deleted": False,
    },
    "mentions": [{"id": 3, "username": "bob"}],
}
_ROOM_NOT_FOUND = error_response(
    404, "Room not found.", "not_found", "No such room, or the caller is not a member."
)
_ROOM_ID = OpenApiParameter("room_id", int, OpenApiParameter.PATH, description="Room id.")
_MESSAGE_ID = OpenApiParameter("message_id", int, OpenApiParameter.PATH, description="Message id.")


def _api_error(error: services.ChatError) -> exceptions.APIException:
    """The REST answer to a refused chat command: 404 (not a member, no such room), 403, 400."""
    if isinstance(error, services.RoomNotFound | services.ChatNotFound):
        return exceptions.NotFound(error.detail)
    if isinstance(error, services.ChatForbidden):
        return exceptions.PermissionDenied(error.detail)
    if isinstance(error, services.UsersRefused):  # one flat answer that names no user
        return InvalidRequest(error.detail)
    return exceptions.ValidationError({"detail": [error.detail]}, code="invalid")


def _room_of_member(request: Request, room_id: int) -> Room:
    room = selectors.room_get(room_id=room_id, user_id=request.user.pk)
    if room is None:  # the same answer whether the room exists or not
        raise exceptions.NotFound(services.RoomNotFound.default_detail)
    return room


class RoomListView(APIView):
    """``GET``: the caller's rooms, most recently active first (a list, not paginated).
    ``POST {name, members?}``: a group room owned by the caller (``201``); ``POST
    {direct_with}``: the pair's one direct room, ``201`` when created, ``200`` when it existed.
    """

    throttle_scope = "rooms"  # POST only (config.throttling)

    @extend_schema(
        tags=["rooms"],
        operation_id="rooms_list",
        summary="The caller's rooms, most recently active first",
        responses={200: RoomSerializer(many=True), **AUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        rooms = selectors.room_list(user_id=request.user.pk)
        return Response(RoomSerializer(rooms, many=True).data)

    @extend_schema(
        tags=["rooms"],
        summary="Create a group room, or get-or-create the direct room with a user",
        request=RoomCreateSerializer,
        responses={
            201: OpenApiResponse(RoomSerializer, description="Created."),
            200: OpenApiResponse(RoomSerializer, description="The direct room existed."),
            **errors(400, 401, 404),
        },
        examples=[
            OpenApiExample(
                "group room", value={"name": "ops", "members": [3, 4]}, request_only=True
            ),
            OpenApiExample("direct room", value={"direct_with": 3}, request_only=True),
        ],
    )
    def post(self, request: Request) -> Response:
        body = RoomCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "direct_with" in data:
            try:
                room, created = services.room_direct_get_or_create(
                    user_id=request.user.pk, other_id=data["direct_with"]
                )
            except services.ChatError as error:
                raise _api_error(error) from error
        else:
            try:
                room = services.room_create(
                    creator_id=request.user.pk, name=data["name"], member_ids=data["members"]
                )
            except services.ChatError as error:
                raise _api_error(error) from error
            created = True
        return Response(
            RoomSerializer(_room_of_member(request, room.pk)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class RoomDetailView(APIView):
    """``GET /api/rooms/{id}/``: the room, for its members; ``404`` for anyone else.
    ``PATCH {name}`` (owners, ``chat.moderate_room``): rename; ``room.renamed`` on the room's
    feed and ``room.updated`` to every member."""

    @extend_schema(
        tags=["rooms"],
        summary="One room of the caller's",
        parameters=[_ROOM_ID],
        responses={200: RoomSerializer, **AUTHENTICATED, 404: _ROOM_NOT_FOUND},
    )
    def get(self, request: Request, room_id: int) -> Response:
        return Response(RoomSerializer(_room_of_member(request, room_id)).data)

    @extend_schema(
        tags=["rooms"],
        summary="Rename a group room (owners, moderators)",
        parameters=[_ROOM_ID],
        request=RoomUpdateSerializer,
        responses={
            200: OpenApiResponse(
                RoomSerializer, description="Renamed (the room as the caller sees it)."
            ),
            **errors(400, 401, 403),
            404: _ROOM_NOT_FOUND,
        },
        examples=[OpenApiExample("rename", value={"name": "ops"}, request_only=True)],
    )
    def patch(self, request: Request, room_id: int) -> Response:
        body = RoomUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            room = services.room_rename(
                room_id=room_id, actor_id=request.user.pk, name=body.validated_data["name"]
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        shown = selectors.room_get(room_id=room.pk, user_id=request.user.pk)
        if shown is None:  # a moderator who is not a member: no per-member fields
            return Response({"id": room.pk, "name": room.name, "kind": room.kind, "seq": room.seq})
        return Response(RoomSerializer(shown).data)


class RoomMembersView(APIView):
    """``POST /api/rooms/{id}/members/ {user_id, role?}`` (owners, moderators): ``201`` member
    added, ``200`` already one (role updated); ``403`` for other members, ``404`` non-members."""

    @extend_schema(
        tags=["rooms"],
        summary="Add a member or change a member's role (owners, moderators)",
        parameters=[_ROOM_ID],
        request=MemberAddSerializer,
        responses={
            201: OpenApiResponse(MemberSerializer, description="Added."),
            200: OpenApiResponse(MemberSerializer, description="Already a member; role updated."),
            **errors(400, 401, 403),
            404: _ROOM_NOT_FOUND,
        },
        examples=[OpenApiExample("add", value={"user_id": 4, "role": "member"}, request_only=True)],
    )
    def post(self, request: Request, room_id: int) -> Response:
        body = MemberAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            membership, created = services.room_member_add(
                room_id=room_id,
                actor_id=request.user.pk,
                user_id=body.validated_data["user_id"],
                role=body.validated_data.get("role"),
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        return Response(
            MemberSerializer(membership).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class RoomMemberView(APIView):
    """``DELETE /api/rooms/{id}/members/{user_id}/`` → ``204``: owners and moderators remove anyone,
    a member removes themselves (leaves). The removed user's sockets stop receiving the room
    at once, on every process."""

    @extend_schema(
        tags=["rooms"],
        summary="Remove a member, or leave; their sockets stop receiving the room at once",
        parameters=[
            _ROOM_ID,
            OpenApiParameter("user_id", int, OpenApiParameter.PATH, description="User id."),
        ],
        responses={
            204: OpenApiResponse(description="Removed."),
            **errors(400, 401, 403),
            404: _ROOM_NOT_FOUND,
        },
    )
    def delete(self, request: Request, room_id: int, user_id: int) -> Response:
        try:
            services.room_member_remove(
                room_id=room_id,
                actor_id=request.user.pk,
                user_id=user_id,
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomMessagesView(APIView):
    """``GET``: history, newest first: ``{next, previous, results}`` where ``next`` is the
    older page (``?before=``) and ``previous`` the newer one (``?after=``), ``null`` at either
    end. ``POST {body, client_id?, reply_to?}`` → ``201`` the message, pushed live like a
    socket's send; services post with a key of scope ``rooms:post``, as their account, a
    member."""

    service_scopes = {"POST": Scope.ROOMS_POST}

    throttle_scope = "messages"  # POST only (config.throttling)

    @extend_schema(
        tags=["rooms"],
        operation_id="rooms_messages_list",
        summary="A room's history, newest first; `next` is older, `previous` newer",
        parameters=[_ROOM_ID, MessageListFilter],
        responses={
            200: OpenApiResponse(
                cursor_page("MessagePage", MessageSerializer(many=True)),
                examples=[
                    OpenApiExample(
                        "page",
                        value={
                            "next": "https://herald.example.com/api/rooms/3/messages/?before=120",
                            "previous": None,
                            "results": [_MESSAGE],
                        },
                    )
                ],
            ),
            **errors(400, 401),
            404: _ROOM_NOT_FOUND,
        },
    )
    def get(self, request: Request, room_id: int) -> Response:
        if not selectors.room_is_member(room_id=room_id, user_id=request.user.pk):
            raise exceptions.NotFound(services.RoomNotFound.default_detail)
        query = MessageListFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.room_message_page(
            room_id=room_id,
            before=query.validated_data.get("before"),
            after=query.validated_data.get("after"),
            limit=query.validated_data["page_size"],
        )
        url = remove_query_param(
            remove_query_param(request.build_absolute_uri(), "before"), "after"
        )
        messages = page.messages
        return Response(
            {
                "next": replace_query_param(url, "before", messages[-1].pk)
                if page.has_older
                else None,
                "previous": replace_query_param(url, "after", messages[0].pk)
                if page.has_newer
                else None,
                "results": MessageSerializer(messages, many=True).data,
            }
        )

    @extend_schema(
        tags=["rooms"],
        summary="Post a message (pushed live like a socket's `message.send`)",
        parameters=[_ROOM_ID],
        request=MessageCreateSerializer,
        responses={
            201: OpenApiResponse(
                MessageSerializer, examples=[OpenApiExample("message", value=_MESSAGE)]
            ),
            **errors(400, 401),
            404: _ROOM_NOT_FOUND,
        },
        examples=[
            OpenApiExample(
                "message",
                value={"body": "hello", "client_id": _MESSAGE["client_id"]},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, room_id: int) -> Response:
        body = MessageCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            message = services.room_message_send(
                room_id=room_id,
                author_id=request.user.pk,
                body=body.validated_data["body"],
                client_id=body.validated_data.get("client_id"),
                reply_to=body.validated_data.get("reply_to"),
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        return Response(message_payload(message), status=status.HTTP_201_CREATED)


class RoomMessageView(APIView):
    """``PATCH {body}``: the author edits (``200`` the message after); ``DELETE``: the author,
    the room's owners or a moderator deletes (``200`` the tombstone). Both are changes of the
    room's feed, pushed live."""

    @extend_schema(
        tags=["rooms"],
        summary="Edit one's own message",
        parameters=[_ROOM_ID, _MESSAGE_ID],
        request=MessageEditSerializer,
        responses={200: MessageSerializer, **errors(400, 401, 403), 404: _ROOM_NOT_FOUND},
        examples=[OpenApiExample("edit", value={"body": "hello, all"}, request_only=True)],
    )
    def patch(self, request: Request, room_id: int, message_id: int) -> Response:
        body = MessageEditSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            message = services.message_edit(
                room_id=room_id,
                message_id=message_id,
                user_id=request.user.pk,
                body=body.validated_data["body"],
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        return Response(message)

    @extend_schema(
        tags=["rooms"],
        summary="Delete a message (author, owners, moderators); a tombstone stays",
        parameters=[_ROOM_ID, _MESSAGE_ID],
        request=None,
        responses={200: MessageSerializer, **errors(401, 403), 404: _ROOM_NOT_FOUND},
    )
    def delete(self, request: Request, room_id: int, message_id: int) -> Response:
        try:
            message = services.message_delete(
                room_id=room_id, message_id=message_id, user_id=request.user.pk
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        return Response(message)


class MessageReactionsView(APIView):
    """``POST {emoji}`` / ``DELETE {emoji}`` (or ``?emoji=``): the caller's reaction on a
    message (members); ``200 {message, reactions}``. Adding one already given or removing one
    not given changes nothing."""

    def _set(self, request: Request, room_id: int, message_id: int, add: bool) -> Response:
        data = request.data if isinstance(request.data, dict) and request.data else None
        emoji = data.get("emoji") if data is not None else request.query_params.get("emoji")
        body = ReactionBodySerializer(data={} if emoji is None else {"emoji": emoji})
        body.is_valid(raise_exception=True)
        try:
            reactions = services.reaction_set(
                room_id=room_id,
                message_id=message_id,
                user_id=request.user.pk,
                emoji=body.validated_data["emoji"],
                add=add,
            )
        except services.ChatError as error:
            raise _api_error(error) from error
        return Response({"message": message_id, "reactions": reactions})

    @extend_schema(
        tags=["rooms"],
        summary="React to a message with one emoji",
        parameters=[_ROOM_ID, _MESSAGE_ID],
        request=ReactionBodySerializer,
        responses={200: ReactionsSerializer, **errors(400, 401), 404: _ROOM_NOT_FOUND},
        examples=[OpenApiExample("react", value={"emoji": "👍"}, request_only=True)],
    )
    def post(self, request: Request, room_id: int, message_id: int) -> Response:
        return self._set(request, room_id, message_id, add=True)

    @extend_schema(
        tags=["rooms"],
        summary="Take back one's reaction (body `{emoji}` or `?emoji=`)",
        parameters=[
            _ROOM_ID,
            _MESSAGE_ID,
            OpenApiParameter("emoji", str, OpenApiParameter.QUERY, required=False),
        ],
        request=ReactionBodySerializer,
        responses={200: ReactionsSerializer, **errors(400, 401), 404: _ROOM_NOT_FOUND},
    )
    def delete(self, request: Request, room_id: int, message_id: int) -> Response:
        return self._set(request, room_id, message_id, add=False)
