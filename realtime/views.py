"""``GET /api/asyncapi.json``: the WebSocket protocol as an AsyncAPI 3.0 document (public)."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from .asyncapi import document


@require_GET
def asyncapi(request: HttpRequest) -> JsonResponse:
    """The document of ``realtime.asyncapi.document``; public, like ``/api/schema/``."""
    return JsonResponse(document())
