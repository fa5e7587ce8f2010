"""The REST API of notification preferences and Web Push subscriptions (docs/protocol.md,
"Preferences" and "Web Push")."""

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import AUTHENTICATED, errors

from . import preferences, push
from .models import DigestChoice, PushSubscription

_PREFERENCES = {
    "push": True,
    "email_digest": "daily",
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
    "muted_rooms": [5],
}
_SUBSCRIPTION = {
    "endpoint": "https://push.example.net/send/abc123",
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg",
    },
}


def _invalid(field: str, error: ValueError) -> ValidationError:
    return ValidationError({field: [ErrorDetail(str(error), code="invalid")]})


class QuietHoursSerializer(serializers.Serializer):
    """``{start: "HH:MM", end: "HH:MM", timezone: IANA name}``."""

    start = serializers.CharField(help_text="24 h wall-clock time, HH:MM; quiet from here")
    end = serializers.CharField(help_text="HH:MM, exclusive; before `start` means overnight")
    timezone = serializers.CharField(help_text="IANA time zone name, e.g. Europe/Berlin")


@extend_schema_field(QuietHoursSerializer)
class QuietHoursField(serializers.JSONField):
    """``quiet_hours`` as given: checked whole by ``preferences.parse_quiet_hours``, so every
    problem is one ``400 invalid`` naming the field (``quiet_hours.start`` …), as flat as every
    other error of the API."""


class PreferencesSerializer(serializers.Serializer):
    """``{push, email_digest, quiet_hours, muted_rooms}``; a PATCH gives any of them."""

    push = serializers.BooleanField(required=False, help_text="Web Push when no socket is open")
    email_digest = serializers.ChoiceField(choices=DigestChoice.choices, required=False)
    quiet_hours = QuietHoursField(
        allow_null=True, required=False, help_text="No push in these hours; null: none"
    )
    muted_rooms = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        max_length=10_000,
        required=False,
        help_text="Rooms (of which the caller is a member) that notify and push nothing",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise ValidationError(
                {name: [ErrorDetail("unknown preference", code="invalid")] for name in unknown}
            )
        return super().to_internal_value(data)


class SubscriptionKeysSerializer(serializers.Serializer):
    """The subscription's keys (Push API ``PushSubscription.toJSON().keys``), base64url."""

    p256dh = serializers.CharField(max_length=128, help_text="P-256 public key, 65 bytes")
    auth = serializers.CharField(max_length=64, help_text="authentication secret, 16 bytes")


class SubscriptionSerializer(serializers.Serializer):
    """Body of ``POST /api/push/subscriptions/``: the Push API's ``PushSubscription.toJSON()``."""

    endpoint = serializers.CharField(max_length=2048)
    keys = SubscriptionKeysSerializer()


class SubscriptionDeleteSerializer(serializers.Serializer):
    """Body of ``DELETE /api/push/subscriptions/``: ``{endpoint}``."""

    endpoint = serializers.CharField(max_length=2048)


class DeviceSerializer(serializers.ModelSerializer):
    """One subscribed browser, as the caller's device list shows it."""

    class Meta:
        model = PushSubscription
        fields = ["id", "endpoint", "user_agent", "created_at"]
        read_only_fields = fields


class PreferencesView(APIView):
    """``GET, PATCH /api/me/preferences/``."""

    @extend_schema(
        tags=["me"],
        summary="The caller's notification preferences",
        responses={
            200: OpenApiResponse(
                PreferencesSerializer, examples=[OpenApiExample("set", value=_PREFERENCES)]
            ),
            **AUTHENTICATED,
        },
    )
    def get(self, request: Request) -> Response:
        return Response(preferences.preferences_get(user_id=request.user.pk))

    @extend_schema(
        tags=["me"],
        summary="Change some notification preferences",
        description=(
            "Any of the fields; the answer is every preference after the change. `400 invalid` "
            "for a muted room that does not exist or the caller is not a member of, quiet "
            "hours that are not `HH:MM` or name no IANA time zone, or an unknown field."
        ),
        request=PreferencesSerializer,
        responses={200: PreferencesSerializer, **errors(400, 401)},
    )
    def patch(self, request: Request) -> Response:
        body = PreferencesSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = dict(body.validated_data)
        try:
            answer = preferences.preferences_update(user_id=request.user.pk, changes=changes)
        except preferences.PreferenceError as error:
            raise _invalid(error.field, error) from None
        return Response(answer)


class VapidPublicKeyView(APIView):
    """``GET /api/push/vapid-public-key/`` → ``{public_key}``: no secret, but only a signed-in
    user has a use for it (the settings page has it in its own config too)."""

    @extend_schema(
        tags=["notifications"],
        summary="The VAPID public key browsers subscribe with (applicationServerKey)",
        responses={
            200: OpenApiResponse(
                inline_serializer(
                    "VapidPublicKey",
                    fields={"public_key": serializers.CharField(help_text="base64url, 65 bytes")},
                ),
                examples=[OpenApiExample("key", value={"public_key": "BKx...base64url"})],
            ),
            **AUTHENTICATED,
        },
    )
    def get(self, request: Request) -> Response:
        return Response({"public_key": push.vapid_public_key()})


class PushSubscriptionsView(APIView):
    """``GET, POST, DELETE /api/push/subscriptions/``: the caller's subscribed browsers."""

    @extend_schema(
        tags=["notifications"],
        summary="The caller's subscribed browsers (newest first)",
        responses={200: DeviceSerializer(many=True), **AUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        subs = PushSubscription.objects.filter(user=request.user)
        return Response(DeviceSerializer(subs, many=True).data)

    @extend_schema(
        tags=["notifications"],
        summary="Subscribe this browser to Web Push",
        description=(
            "The body is the Push API's `PushSubscription.toJSON()`. `400 invalid` for an "
            "endpoint that is not https, or keys that are not base64url of 65 (p256dh) and 16 "
            "(auth) bytes. `201` when new, `200` when the endpoint was known (it now belongs to "
            "the caller)."
        ),
        request=SubscriptionSerializer,
        examples=[OpenApiExample("subscription", value=_SUBSCRIPTION, request_only=True)],
        responses={201: DeviceSerializer, 200: DeviceSerializer, **errors(400, 401)},
    )
    def post(self, request: Request) -> Response:
        body = SubscriptionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            sub, created = push.subscription_save(
                user_id=request.user.pk,
                endpoint=data["endpoint"],
                p256dh=data["keys"]["p256dh"],
                auth=data["keys"]["auth"],
                user_agent=request.headers.get("User-Agent", ""),
            )
        except push.SubscriptionError as error:
            raise _invalid(error.field, error) from None
        return Response(
            DeviceSerializer(sub).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        tags=["notifications"],
        summary="Unsubscribe a browser",
        request=SubscriptionDeleteSerializer,
        responses={204: None, **errors(400, 401, 404)},
    )
    def delete(self, request: Request) -> Response:
        body = SubscriptionDeleteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not push.subscription_delete(
            user_id=request.user.pk, endpoint=body.validated_data["endpoint"]
        ):
            return Response(
                {"detail": "No such subscription.", "code": "not_found"},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
