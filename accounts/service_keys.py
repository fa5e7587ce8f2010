"""Service accounts and their API keys: create, revoke, look up, record use
(docs/security.md, "Service keys").

A key is ``<prefix>.<secret>`` (djangorestframework-api-key): the prefix finds the row, the
secret is checked against a stored hash (SHA-512; the key has ~190 bits of entropy, so a slow
hash is not needed). The key itself is never stored and is shown once, by whoever creates it.
"""

from collections.abc import Iterable

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import Scope, ServiceKey, User, validate_scopes

_TOUCH_EVERY = 60  # s: at most one last_used_at write per key per minute


class ServiceKeyError(ValueError):
    """A refused create or revoke; ``code`` names why (``unknown_scope``, ``not_service``,
    ``not_found``), ``str()`` says it for a person."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def service_key_create(
    *, name: str, scopes: Iterable[str], username: str | None = None
) -> tuple[ServiceKey, str]:
    """Create a key named ``name`` with ``scopes`` for the service account ``username``
    (default ``name``), creating that account if needed; ``(key row, the key)``.

    The account is a user with ``is_service`` and no usable password. Raises
    :class:`ServiceKeyError`: ``unknown_scope`` (a scope not in :class:`Scope`, or none),
    ``not_service`` (``username`` is a person's account: it is never turned into a service).
    """
    scopes = sorted(set(scopes))
    if not scopes:
        raise ServiceKeyError(
            f"Give at least one scope: {', '.join(Scope.values)}.", "unknown_scope"
        )
    try:
        validate_scopes(scopes)
    except ValidationError as error:
        raise ServiceKeyError(error.messages[0], "unknown_scope") from error
    username = username or name
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(username=username, password=None, is_service=True)
        elif not user.is_service:
            raise ServiceKeyError(f"User {username!r} is not a service account.", "not_service")
        row, key = ServiceKey.objects.create_key(name=name, user=user, scopes=scopes)
    return row, key


def service_key_revoke(*, prefix: str) -> ServiceKey:
    """Revoke the key whose prefix is ``prefix`` (the part before the dot); at once, for every
    process (each request looks the key up). Raises :class:`ServiceKeyError` ``not_found``."""
    row = ServiceKey.objects.filter(prefix=prefix).first()
    if row is None:
        raise ServiceKeyError(f"No service key has the prefix {prefix!r}.", "not_found")
    if not row.revoked:
        row.revoked = True
        row.save(update_fields=["revoked"])
    return row


def service_key_from(raw: str) -> ServiceKey | None:
    """The usable key (not revoked, not expired, its account active) that ``raw`` is, with
    its user loaded; ``None`` otherwise. One query, one hash."""
    prefix, dot, _ = raw.partition(".")
    if not dot or not prefix:
        return None
    row = ServiceKey.objects.select_related("user").filter(prefix=prefix, revoked=False).first()
    if row is None or row.has_expired or not row.user.is_active or not row.is_valid(raw):
        return None
    return row


def service_key_touch(row: ServiceKey) -> None:
    """Record a use: ``last_used_at = now``, at most once a minute per key (a cache ``add``
    gates the write, as for login sessions)."""
    try:
        due = cache.add(f"herald:service-key-used:{row.pk}", 1, _TOUCH_EVERY)
    except Exception:  # cache down: skip the bookkeeping rather than fail the request
        return
    if due:
        ServiceKey.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
