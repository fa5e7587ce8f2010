"""HTTP middleware: signs out a browser whose web login session was revoked
(docs/security.md, "Login sessions")."""

from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from . import context, selectors, services
from .services import WEB_SESSION_KEY


class LoginSessionMiddleware:
    """After ``AuthenticationMiddleware``: a cookie login whose ``LoginSession`` is revoked is
    logged out before the view runs (one cache read per request)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Reset after the response: the test client and WSGI reuse a thread between requests.
        reset = context.current_login_session.set(None)
        try:
            session_id = request.session.get(WEB_SESSION_KEY)
            if session_id:
                if selectors.login_session_user_id(session_id) is None:
                    logout(request)
                else:
                    context.current_login_session.set(session_id)
                    services.login_session_touch(session_id=session_id)
            return self.get_response(request)
        finally:
            context.current_login_session.reset(reset)
