"""OpenAPI 3 pieces shared by every ``/api/`` view: the error shape, the bearer scheme, examples.

drf-spectacular builds the schema at ``/api/schema/`` from the views' ``@extend_schema``
annotations; this module holds what they have in common. Importing it registers
:class:`BearerScheme` and :class:`ServiceKeyScheme`, so every module that documents a view imports it.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every API error (docs/protocol.md, "HTTP API"): ``{detail, code}``; validation errors
    add ``errors``."""

    detail = serializers.CharField(help_text="Human-readable message.")
    code = serializers.CharField(help_text="Machine-readable code, e.g. `not_authenticated`.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="400 only: field name → its messages (`non_field_errors` for the whole body).",
    )


class BearerScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <access JWT>`` of a login session that is still active."""

    target_class = "accounts.authentication.LoginSessionJWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer", bearer_format="JWT"
        )
        scheme["description"] = (
            "An access JWT from `POST /api/auth/token/` (lifetime "
            "`HERALD_ACCESS_TOKEN_LIFETIME`, 300 s by default); refused once its login "
            "session is revoked (`session_revoked`)."
        )
        return scheme


class ServiceKeyScheme(OpenApiAuthenticationExtension):
    """``Authorization: Api-Key <key>`` of a service account (docs/security.md, "Service
    keys")."""

    target_class = "accounts.authentication.ServiceKeyAuthentication"
    name = "serviceKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "`Api-Key <key>`: a service account's key from `manage.py herald_service_key "
                "create`. The request acts as the service account; the key reaches only the "
                "routes of its scopes (`notifications:send`, `rooms:post`, `webhooks:manage`; "
                "else 403 `scope_required`) and `GET /api/me/`. A revoked or unknown key: 401 "
                "`invalid_api_key`."
            ),
        }


def error_response(status: int, detail: str, code: str, description: str) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(code, value={"detail": detail, "code": code}, status_codes=[str(status)])
        ],
    )


BAD_REQUEST = OpenApiResponse(
    response=ErrorSerializer,
    description="The body or query failed validation.",
    examples=[
        OpenApiExample(
            "invalid",
            value={
                "detail": "Invalid input.",
                "code": "required",
                "errors": {"title": ["This field is required."]},
            },
            status_codes=["400"],
        )
    ],
)
UNAUTHENTICATED = error_response(
    401,
    "Authentication credentials were not provided.",
    "not_authenticated",
    "No credentials, a bad or expired token (`token_not_valid`), or a revoked login session "
    "(`session_revoked`).",
)
FORBIDDEN = error_response(
    403,
    "You do not have permission to perform this action.",
    "permission_denied",
    "Authenticated, but not allowed.",
)
NOT_FOUND = error_response(404, "Not found.", "not_found", "No such object, or not yours.")


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The standard error responses for ``statuses`` (400, 401, 403, 404), for ``responses=``."""
    table = {400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}
    return {status: table[status] for status in statuses}


AUTHENTICATED = errors(401)  # every authenticated route can answer 401


def cursor_page(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """A cursor page ``{next, previous, results}`` of ``item`` (URLs, ``null`` at either end)."""
    return inline_serializer(
        name,
        fields={
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item,
        },
    )
