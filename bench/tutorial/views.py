"""The tutorial's REST side: a loop of ``create`` and ``group_send`` per recipient."""

import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework_simplejwt.authentication import JWTAuthentication

from notifications.models import Notification

from .consumers import BROADCAST_GROUP


def _authenticated(request: HttpRequest) -> Any:
    return JWTAuthentication().authenticate(request)  # type: ignore[arg-type]


@csrf_exempt
def notify_each(request: HttpRequest) -> JsonResponse:
    """``{recipients, title, seq}``: one row and one ``group_send`` per recipient."""
    if _authenticated(request) is None:
        return JsonResponse({"detail": "unauthenticated"}, status=401)
    body = json.loads(request.body)
    layer = get_channel_layer()
    count = 0
    for user_id in body["recipients"]:
        row = Notification.objects.create(
            recipient_id=user_id, seq=body["seq"], title=body["title"], body=""
        )
        async_to_sync(layer.group_send)(
            f"user_{user_id}",
            {
                "type": "notify",
                "notification": {
                    "id": row.pk,
                    "seq": row.seq,
                    "title": row.title,
                    "created_at": row.created_at.isoformat(),
                },
            },
        )
        count += 1
    return JsonResponse({"count": count}, status=201)


@csrf_exempt
def broadcast(request: HttpRequest) -> JsonResponse:
    """``{title}``: one ``group_send`` to the group every socket joined."""
    if _authenticated(request) is None:
        return JsonResponse({"detail": "unauthenticated"}, status=401)
    body = json.loads(request.body)
    async_to_sync(get_channel_layer().group_send)(
        BROADCAST_GROUP, {"type": "notify", "notification": {"title": body["title"]}}
    )
    return JsonResponse({"count": 1}, status=201)
