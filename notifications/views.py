"""Web pages of notifications: the one-click unsubscribe link of email digests."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import digests
from .preferences import email_digest_off


@csrf_exempt  # a signed link, no login: mail clients POST it (RFC 8058), no cookie involved
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """``GET`` asks to confirm (a link prefetcher must not unsubscribe anyone); ``POST`` —
    the button, or a mail client's ``List-Unsubscribe=One-Click`` (RFC 8058 §3.1) — turns the
    user's email digests off. A token not signed by this deployment answers 400."""
    user_id = digests.user_of_unsubscribe_token(token)
    if user_id is None:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        email_digest_off(user_id)
        return render(request, "notifications/unsubscribe.html", {"done": True})
    return render(request, "notifications/unsubscribe.html", {})
