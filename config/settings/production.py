"""Production settings: debug off unless asked, a strong secret key required, secure cookies.

``config/asgi.py`` uses this module by default, so ``daphne config.asgi:application`` with only
the environment of docs/deployment.md runs production settings.
"""

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from config import metrics_dir

from .base import *  # noqa: F403
from .base import BASE_DIR, HERALD, env

metrics_dir.configure(BASE_DIR)  # before anything imports prometheus-client

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG:
        from .dev import SECRET_KEY  # (the dev key file, with its warning)
    else:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0")
# Django's deployment check security.W009, as an error that stops every process (daphne runs no
# system checks): a key that short or that repetitive can be guessed, and it signs the sessions
# and every JWT.
if (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} characters with at least "
        f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones, and not Django's "
        f"'{SECRET_KEY_INSECURE_PREFIX}' placeholder: generate one with "
        '`python -c "import secrets; print(secrets.token_urlsafe(64))"`'
    )
if not (HERALD["VAPID_PRIVATE_KEY"] and HERALD["VAPID_SUBJECT"]):
    if DEBUG:
        from .dev import HERALD  # noqa: F811  (the dev Web Push key file, with its warning)
    else:
        raise ImproperlyConfigured(
            "HERALD_VAPID_PRIVATE_KEY and HERALD_VAPID_SUBJECT are required when DJANGO_DEBUG=0"
        )

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("HERALD_SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # TLS ends at the proxy (docs/deployment.md), which sets X-Forwarded-Proto; it must also
    # overwrite any X-Forwarded-Proto a client sends, or this header means nothing.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Plain-HTTP requests are redirected to HTTPS, except the probes a load balancer or
    # Prometheus sends straight to a daphne process (docs/deployment.md, section 7).
    SECURE_SSL_REDIRECT = env.bool("HERALD_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    # HSTS: browsers refuse plain HTTP for this host for HERALD_HSTS_SECONDS (0 turns it off,
    # e.g. while trying TLS out; Django's docs warn that a long value is hard to undo).
    SECURE_HSTS_SECONDS = env.int("HERALD_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HERALD_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("HERALD_HSTS_PRELOAD", default=False)
    # Preloading is the operator's commitment (hstspreload.org), not a default: the check that
    # asks for it is silenced until HERALD_HSTS_PRELOAD=1 turns it on.
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
