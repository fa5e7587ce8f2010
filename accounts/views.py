"""Web pages: sign in, sign out (Django's session auth) and the signed-in home page."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse


class LoginView(auth_views.LoginView):
    """``/login/``: Django's login form; the login creates a web login session (receivers)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """``POST /logout/``: ends the Django session and revokes its login session."""


# The chat page runs only our own static module: no inline script, nothing from another origin,
# so an injected tag in user content could not run even if it ever reached the DOM as markup.
HOME_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """``/``: the chat web UI (templates/home.html + ``herald/app.js``); its socket
    authenticates with the session cookie (docs/security.md, "WebSocket credentials", #5)."""
    user = request.user
    config = {
        "user": {"id": user.pk, "username": user.username, "display_name": user.display_name},
        "csrfToken": get_token(request),
        "loginUrl": reverse("login"),
    }
    response = render(request, "home.html", {"herald_config": config})
    response["Content-Security-Policy"] = HOME_CSP
    return response
