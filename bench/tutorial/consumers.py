"""The tutorial consumer and its JWT middleware (``?token=``, a user query at every connect)."""

import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from chat.models import Message

BROADCAST_GROUP = "everyone"


@database_sync_to_async
def get_user(user_id: int) -> Any:
    try:
        return get_user_model().objects.get(pk=user_id)
    except get_user_model().DoesNotExist:
        return AnonymousUser()


class JWTAuthMiddleware:
    """The middleware most tutorials paste: decode ``?token=``, then fetch the user."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        query = parse_qs(scope["query_string"].decode())
        user: Any = AnonymousUser()
        try:
            token = AccessToken(query.get("token", [""])[0])
            user = await get_user(int(token["user_id"]))
        except (TokenError, KeyError, ValueError):
            pass
        return await self.app(dict(scope, user=user), receive, send)


class TutorialConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.user = self.scope["user"]
        if not self.user.is_authenticated:
            await self.close()
            return
        await self.channel_layer.group_add(f"user_{self.user.pk}", self.channel_name)
        await self.channel_layer.group_add(BROADCAST_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "user": {"id": self.user.pk}})

    async def disconnect(self, code: int) -> None:
        if self.user.is_authenticated:
            await self.channel_layer.group_discard(f"user_{self.user.pk}", self.channel_name)
            await self.channel_layer.group_discard(BROADCAST_GROUP, self.channel_name)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if content["type"] == "subscribe":
            await self.channel_layer.group_add(f"room_{content['room']}", self.channel_name)
            await self.send_json({"type": "ack", "room": content["room"]})
        elif content["type"] == "message":
            message = await database_sync_to_async(Message.objects.create)(
                room_id=content["room"],
                author_id=self.user.pk,
                body=content["body"],
                client_id=uuid.UUID(content["client_id"]),
            )
            await self.channel_layer.group_send(
                f"room_{content['room']}",
                {
                    "type": "chat.message",
                    "room": content["room"],
                    "message": {
                        "id": message.pk,
                        "author": {"id": self.user.pk, "username": self.user.username},
                        "body": message.body,
                        "created_at": message.created_at.isoformat(),
                    },
                },
            )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "message", "room": event["room"], "message": event["message"]}
        )

    async def notify(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "notification", "notification": event["notification"]})
