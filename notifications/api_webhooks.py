"""``/api/webhooks/``: a service account registers, lists and deletes its webhook endpoints
(docs/protocol.md, "Webhooks"). Only service keys with the scope ``webhooks:manage``."""

from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import Scope, ServiceKeyRequired, ServiceKeyScopes
from config.openapi import error_response, errors

from . import webhooks
from .models import WebhookEndpoint

_ENDPOINT = {
    "id": 4,
    "url": "https://hooks.example.com/herald",
    "events": ["member.joined", "message.created"],
    "enabled": True,
    "failure_count": 0,
    "created_at": "2026-12-01T12:00:00.000000Z",
}
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw6m2qJ8mU5xY="


class WebhookEndpointCreateSerializer(serializers.Serializer):
    """``{url, events}``: an http(s) URL (up to 2000 characters) and 1..6 event types."""

    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=webhooks.EVENT_TYPES),
        min_length=1,
        max_length=len(webhooks.EVENT_TYPES),
    )


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as listed: ``{id, url, events, enabled, failure_count, created_at}``."""

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "enabled", "failure_count", "created_at"]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """The answer to a registration: the endpoint plus its ``secret``, shown this once."""

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class _WebhookView(APIView):
    permission_classes = [IsAuthenticated, ServiceKeyRequired, ServiceKeyScopes]
    service_scopes = {m: Scope.WEBHOOKS_MANAGE for m in ("GET", "POST", "DELETE")}


_FORBIDDEN = error_response(
    403,
    "This API key lacks the scope webhooks:manage.",
    "scope_required",
    "Not a service key (`service_key_required`), or one without `webhooks:manage`.",
)


class WebhookListView(_WebhookView):
    """``GET``: the caller's endpoints; ``POST {url, events}`` → ``201 {id, url, events,
    secret, ...}``; 400 ``invalid_url`` for a URL that is not http(s) or resolves to a
    non-public address."""

    @extend_schema(
        tags=["webhooks"],
        operation_id="webhooks_list",
        summary="The service's webhook endpoints",
        responses={200: WebhookEndpointSerializer(many=True), **errors(401), 403: _FORBIDDEN},
    )
    def get(self, request: Request) -> Response:
        endpoints = WebhookEndpoint.objects.filter(owner=request.user)
        return Response(WebhookEndpointSerializer(endpoints, many=True).data)

    @extend_schema(
        tags=["webhooks"],
        summary="Register a webhook endpoint; its signing secret is shown once",
        request=WebhookEndpointCreateSerializer,
        responses={
            201: OpenApiResponse(
                WebhookEndpointCreatedSerializer,
                examples=[OpenApiExample("created", value={**_ENDPOINT, "secret": _SECRET})],
            ),
            **errors(400, 401),
            403: _FORBIDDEN,
        },
        examples=[
            OpenApiExample(
                "endpoint",
                value={"url": _ENDPOINT["url"], "events": _ENDPOINT["events"]},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        body = WebhookEndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                endpoint = webhooks.endpoint_create(owner_id=request.user.pk, **body.validated_data)
        except webhooks.InvalidWebhookURL as error:
            raise exceptions.ValidationError(
                {"url": [exceptions.ErrorDetail(str(error), code="invalid_url")]}
            ) from error
        return Response(
            WebhookEndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )


class WebhookDetailView(_WebhookView):
    """``DELETE /api/webhooks/{id}/``: 204; 404 for another service's endpoint."""

    @extend_schema(
        tags=["webhooks"],
        summary="Delete a webhook endpoint (pending deliveries are dropped)",
        responses={
            204: OpenApiResponse(description="Deleted."),
            **errors(401, 404),
            403: _FORBIDDEN,
        },
    )
    def delete(self, request: Request, endpoint_id: int) -> Response:
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, owner=request.user).first()
        if endpoint is None:
            raise exceptions.NotFound()
        with transaction.atomic():
            webhooks.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)
