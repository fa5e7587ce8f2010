"""DRF permissions for service keys (docs/security.md, "Service keys").

A request authenticated with ``Authorization: Api-Key`` may use only the routes whose view
names a scope for its method, and only if its key holds that scope: a key is not a login.
Requests authenticated otherwise (bearer JWT, session cookie) are not concerned.

A view declares ``service_scopes = {"POST": Scope.NOTIFICATIONS_SEND, ...}`` (method → scope;
``None``: any key, e.g. ``GET /api/me/``). ``ServiceKeyScopes`` is in
``REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"]``; a view that sets its own permissions lists it
too.
"""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .models import Scope, ServiceKey

__all__ = ["Scope", "ServiceKeyScopes", "ServiceKeyRequired", "is_service_key", "key_scopes"]

_MISSING = object()


def is_service_key(request: Request) -> bool:
    """Whether ``request`` was authenticated with a service key."""
    return isinstance(getattr(request, "auth", None), ServiceKey)


def key_scopes(request: Request) -> frozenset[str]:
    """The scopes of the request's service key (empty for any other credential)."""
    return frozenset(request.auth.scopes) if is_service_key(request) else frozenset()


class ServiceKeyScopes(BasePermission):
    """Passes every request not authenticated by a service key; a keyed request passes only
    if the view's ``service_scopes`` names a scope for its method (``None``: any key) that the
    key holds. Else 403 ``scope_required``."""

    code = "scope_required"

    def has_permission(self, request: Request, view: Any) -> bool:
        if not is_service_key(request):
            return True
        needed = getattr(view, "service_scopes", {}).get(request.method, _MISSING)
        if needed is _MISSING:
            self.message = "API keys cannot use this route."
            return False
        if needed is not None and needed not in request.auth.scopes:
            self.message = f"This API key lacks the scope {needed}."
            return False
        return True


class ServiceKeyRequired(BasePermission):
    """Only requests authenticated by a service key (routes of service accounts, such as
    webhooks): 403 ``service_key_required`` for any other credential."""

    code = "service_key_required"
    message = "This route takes a service account's API key (Authorization: Api-Key)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_service_key(request)
