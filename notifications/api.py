"""The notifications REST API: the service POST, the user's list, read state."""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import Scope, ServiceKeyScopes, is_service_key
from config.openapi import AUTHENTICATED, cursor_page, error_response, errors

from . import selectors, services
from .models import Notification
from .serializers import (
    NotificationCreateResultSerializer,
    NotificationCreateSerializer,
    NotificationSerializer,
    UnreadCountSerializer,
)

_NOTIFICATION = {
    "id": 41,
    "seq": 7,
    "title": "Build finished",
    "body": "main is green",
    "data": {"url": "https://ci.example.com/builds/9"},
    "created_at": "2025-01-01T12:00:00.000000Z",
    "read_at": None,
}
_UNREAD = OpenApiResponse(
    UnreadCountSerializer, examples=[OpenApiExample("unread", value={"unread_count": 3})]
)
SEND_PERMISSION = "notifications.send_notification"


class CanSendNotifications(BasePermission):
    """Users (services) holding ``notifications.send_notification``, or a service key with the
    scope ``notifications:send`` (checked by ``ServiceKeyScopes``)."""

    message = "You may not send notifications."

    def has_permission(self, request: Request, view: Any) -> bool:
        if is_service_key(request):
            return True
        return bool(request.user and request.user.has_perm(SEND_PERMISSION))


class NotificationCursor(CursorPagination):
    """Newest first by ``seq``; ``?cursor=`` pages, ``page_size`` up to 200 (default 50)."""

    ordering = "-seq"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class NotificationListFilter(serializers.Serializer):
    """Query of ``GET /api/notifications/``: ``unread=1``, ``after_seq=N``."""

    unread = serializers.BooleanField(required=False, default=False)
    after_seq = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)


class NotificationListView(APIView):
    """``GET``: the caller's notifications; ``POST`` (senders): store and push to recipients."""

    # Any service key may read its own account's notifications (e.g. "Webhook endpoint
    # disabled"); sending takes the scope.
    service_scopes = {"POST": Scope.NOTIFICATIONS_SEND, "GET": None}
    throttle_scope = "notifications"  # POST only (config.throttling)

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method == "POST":
            return [IsAuthenticated(), ServiceKeyScopes(), CanSendNotifications()]
        return [IsAuthenticated(), ServiceKeyScopes()]

    @extend_schema(
        tags=["notifications"],
        operation_id="notifications_list",
        summary="The caller's notifications, newest first (cursor pages)",
        parameters=[
            NotificationListFilter,
            OpenApiParameter("cursor", str, description="From `next` or `previous`."),
            OpenApiParameter("page_size", int, description="1..200, default 50."),
        ],
        responses={
            200: OpenApiResponse(
                cursor_page("NotificationPage", NotificationSerializer(many=True)),
                examples=[
                    OpenApiExample(
                        "page", value={"next": None, "previous": None, "results": [_NOTIFICATION]}
                    )
                ],
            ),
            **errors(400, 401),
        },
    )
    def get(self, request: Request) -> Response:
        query = NotificationListFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        notifications = selectors.notification_list(user_id=request.user.pk, **query.validated_data)
        paginator = NotificationCursor()
        page = paginator.paginate_queryset(notifications, request, view=self)
        return paginator.get_paginated_response(NotificationSerializer(page, many=True).data)

    @extend_schema(
        tags=["notifications"],
        summary="Send a notification (services: perm `notifications.send_notification`)",
        description=(
            "Stored first, then pushed live to every socket of each recipient. The same "
            "`idempotency_key` from the same sender returns the first call's answer and stores "
            "nothing twice."
        ),
        request=NotificationCreateSerializer,
        responses={
            201: OpenApiResponse(
                NotificationCreateResultSerializer,
                examples=[OpenApiExample("stored", value={"count": 2, "ids": [41, 42]})],
            ),
            **errors(400, 401),
            403: error_response(
                403,
                "You may not send notifications.",
                "permission_denied",
                "The caller lacks `notifications.send_notification`.",
            ),
        },
        examples=[
            OpenApiExample(
                "to two users",
                value={
                    "recipients": [2, 3],
                    "title": "Build finished",
                    "body": "main is green",
                    "data": {"url": "https://ci.example.com/builds/9"},
                    "idempotency_key": "build-9",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        body = NotificationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        batch = services.notification_create(
            recipient_ids=data["recipients"],
            title=data["title"],
            body=data["body"],
            data=data["data"],
            sender_id=request.user.pk,
            idempotency_key=data.get("idempotency_key"),
        )
        return Response({"count": batch.count, "ids": batch.ids}, status=status.HTTP_201_CREATED)


class NotificationReadView(APIView):
    """``POST /api/notifications/{id}/read/`` → ``{unread_count}``; 404 if not the caller's."""

    @extend_schema(
        tags=["notifications"],
        summary="Mark one notification read; every socket of the caller is told",
        request=None,
        responses={200: _UNREAD, **errors(401, 404)},
    )
    def post(self, request: Request, notification_id: int) -> Response:
        get_object_or_404(Notification, pk=notification_id, recipient_id=request.user.pk)
        unread = services.notification_mark_read(user_id=request.user.pk, ids=[notification_id])
        return Response({"unread_count": unread})


class NotificationReadAllView(APIView):
    """``POST /api/notifications/read-all/`` → ``{unread_count}`` (0)."""

    @extend_schema(
        tags=["notifications"],
        summary="Mark every notification read",
        request=None,
        responses={200: _UNREAD, **AUTHENTICATED},
    )
    def post(self, request: Request) -> Response:
        return Response(
            {"unread_count": services.notification_mark_all_read(user_id=request.user.pk)}
        )


class UnreadCountView(APIView):
    """``GET /api/notifications/unread-count/`` → ``{unread_count}``."""

    @extend_schema(
        tags=["notifications"],
        summary="How many notifications are unread",
        responses={200: _UNREAD, **AUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {"unread_count": selectors.notification_unread_count(user_id=request.user.pk)}
        )
