"""The notification settings page (``/settings/``) and the Web Push service worker
(``/push-sw.js``), served at the site's root so that its scope is the whole site (Service
Workers §"service worker script": a worker's maximum scope is its script's directory)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse

from . import push

# Like the chat page: our own scripts only, nothing inline, nothing from another origin;
# ``worker-src 'self'`` for the service worker.
SETTINGS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    """``/settings/``: push on this browser (with the browser's permission prompt), email
    digests, quiet hours and muted rooms (templates ``notifications/settings.html`` +
    ``herald/settings.js``)."""
    user = request.user
    config = {
        "user": {"id": user.pk, "username": user.username},
        "csrfToken": get_token(request),
        "loginUrl": reverse("login"),
        "vapidPublicKey": push.vapid_public_key(),
        "serviceWorker": reverse("push-service-worker"),
    }
    response = render(request, "notifications/settings.html", {"herald_config": config})
    response["Content-Security-Policy"] = SETTINGS_CSP
    return response


def service_worker(request: HttpRequest) -> HttpResponse:
    """``/push-sw.js``: shows a push as a system notification and opens its URL on click.
    ``no-cache``: browsers check for a new version on every registration (Service Workers
    §"Update")."""
    response = render(
        request, "notifications/push-sw.js", content_type="text/javascript; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    return response
