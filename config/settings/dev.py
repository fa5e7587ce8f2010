"""Settings for ``make run`` and ``manage.py``: debug on, a generated secret key if none is set."""

import os
import secrets
import warnings

from config import metrics_dir

from .base import *  # noqa: F403
from .base import BASE_DIR, HERALD, LOGGING, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
LOGGING["handlers"]["console"]["formatter"] = env.str(
    "HERALD_LOG_FORMAT", default="console" if DEBUG else "json"
)
metrics_dir.configure(BASE_DIR)  # before anything imports prometheus-client
# Serve static files from the apps in development, without collectstatic (whitenoise docs).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG


def _dev_secret_key() -> str:
    """Return ``DJANGO_SECRET_KEY``, or a key generated once and kept in ``.herald-dev-secret``.

    The key is kept on disk so that every process started from this checkout signs and checks
    tokens with the same key (a token from one daphne process must verify on another).
    """
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = BASE_DIR / ".herald-dev-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    warnings.warn(
        "DJANGO_SECRET_KEY is not set: using a generated development key. "
        "Set DJANGO_SECRET_KEY in production.",
        stacklevel=1,
    )
    return path.read_text().strip()


SECRET_KEY = _dev_secret_key()


def _dev_vapid_key() -> str:
    """Return ``HERALD_VAPID_PRIVATE_KEY``, or a P-256 key generated once and kept in
    ``.herald-dev-vapid`` (base64url of the raw private key), like the secret key above: the
    browsers' subscriptions are bound to the public key, so it must survive restarts."""
    if key := os.environ.get("HERALD_VAPID_PRIVATE_KEY"):
        return key
    path = BASE_DIR / ".herald-dev-vapid"
    if not path.exists():
        from base64 import urlsafe_b64encode

        from cryptography.hazmat.primitives.asymmetric import ec

        value = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        path.write_text(urlsafe_b64encode(value.to_bytes(32, "big")).decode().rstrip("="))
        path.chmod(0o600)
    warnings.warn(
        "HERALD_VAPID_PRIVATE_KEY is not set: using a generated development key for Web Push. "
        "Set HERALD_VAPID_PRIVATE_KEY and HERALD_VAPID_SUBJECT in production.",
        stacklevel=1,
    )
    return path.read_text().strip()


HERALD["VAPID_PRIVATE_KEY"] = _dev_vapid_key()
HERALD["VAPID_SUBJECT"] = HERALD["VAPID_SUBJECT"] or "mailto:herald@localhost"
HERALD["PUSH_ALLOW_LOOPBACK"] = env.bool("HERALD_WEBHOOK_ALLOW_PRIVATE", default=DEBUG)
