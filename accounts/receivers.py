"""Signal receivers: every web login (login form, admin) is a login session, and a saved user
whose credentials changed loses their login sessions (docs/security.md).

They call services; nothing here touches the channel layer.
"""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import selectors, services
from .models import LoginSession, User


def client_ip(request: Any) -> str | None:
    """The peer address Django saw (``REMOTE_ADDR``); proxies are the deployment's business."""
    return request.META.get("REMOTE_ADDR") or None


@receiver(user_logged_in, dispatch_uid="herald_login_session_create")
def _on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is None or not hasattr(request, "session"):
        return
    if request.session.session_key is None:
        request.session.save()
    session = services.login_session_create(
        user=user,
        kind=LoginSession.Kind.WEB,
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        ip=client_ip(request),
        django_session_key=request.session.session_key,
    )
    request.session[services.WEB_SESSION_KEY] = str(session.pk)


@receiver(user_logged_out, dispatch_uid="herald_login_session_revoke")
def _on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        services.web_logout(django_session=request.session)


@receiver(post_save, sender=User, dispatch_uid="herald_user_credentials_changed")
def _on_user_saved(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    """Deactivation revokes every login session (sockets close 4403); a password change every
    session but the request's own (4401). Any ``save()`` counts, the admin form's included."""
    deactivated, password_changed = (False, False) if created else instance.credential_changes()
    instance.remember_credentials()
    # Handshakes read the user's state from the cache (accounts.selectors.socket_identity):
    # write it through on every save, before the sessions are revoked.
    transaction.on_commit(lambda: selectors.user_remember(instance), robust=True)
    if deactivated or password_changed:
        services.user_changed_credentials(
            user=instance, deactivated=deactivated, password_changed=password_changed
        )


@receiver(post_delete, sender=User, dispatch_uid="herald_user_deleted")
def _on_user_deleted(sender: Any, instance: User, **kwargs: Any) -> None:
    """A deleted user's cached state goes too (their sessions go with the rows)."""
    user_id = instance.pk
    transaction.on_commit(lambda: selectors.user_forget(user_id), robust=True)
