"""Settings shared by every environment, read from the environment (docs/deployment.md;
the Twelve-Factor App, "III. Config").

Every value a deployment changes comes from an environment variable through django-environ;
``dev``, ``production`` and ``test`` only choose defaults that differ.
"""

from datetime import timedelta
from pathlib import Path

import environ
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us (no CDN)
    "django_tasks",  # background work: Django's tasks API (config/tasks.py)
    "django_tasks_db",  # its queue, in this database; task results in the admin
    "rest_framework_api_key",  # service keys, stored hashed (accounts.ServiceKey)
    "channels",
    "realtime",
    "accounts",
    "notifications",
    "chat",
    "axes",  # failed-login lockout (docs/security.md, "Limits")
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.metrics.RequestMetricsMiddleware",  # after whitenoise: static files are not counted
    # Under /api/: JSON errors whatever answered, Cache-Control: no-store (config/errors.py).
    "config.errors.ApiResponseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.LoginSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes's docs ask: turns a lockout into a 429 (config.throttling).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
CSRF_FAILURE_VIEW = "config.errors.csrf_failure"  # JSON under /api/
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so concurrent writers queue on
    # `timeout` instead of failing with "database is locked" when a read lock is upgraded
    # (Django 5.1 release notes, "transaction_mode"). WAL lets readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Persistent connections (``?conn_max_age=0`` in DATABASE_URL turns them off): every
# ``database_sync_to_async`` hop used to open and close one, a quarter of a WebSocket
# handshake's CPU on SQLite and a TCP connect plus auth on PostgreSQL (docs/performance.md).
# One per executor thread; the health check drops a connection the server closed.
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# django-axes's backend first: it refuses a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REDIS_URL = env.str("REDIS_URL", default="")
# The cache reconnects once or twice, quickly, before a command fails: with a pool given, redis-py
# retries nothing, and after a Redis restart the first command on each pooled (stale) connection
# failed. Bounded: with Redis down, callers fail within a second.
_REDIS_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.1), 2)
if REDIS_URL:
    # redis-py 8 defaults (pool of 100 connections, 5 s socket timeout) break a channel layer
    # under a handshake burst ("Too many connections") and on idle sockets (closed with 1011;
    # docs/architecture.md, "Channel layer"), so every connection option is set here. The
    # pub/sub layer keeps no group membership with an expiry and no per-process inbox with a
    # capacity: groups are Redis subscriptions that live as long as the process's connection (docs/architecture.md, "Channel layer").
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.adapters.PubSubLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": 10_000,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 2,
                        "socket_keepalive": True,
                        "health_check_interval": 15,
                        # No ``retry`` here: with one, redis-py's PubSub "subscribed" on a dead
                        # connection and handshakes succeeded while Redis was down. Stale
                        # publish connections are dropped on reconnect instead
                        # (realtime/resilience.py).
                    }
                ],
                "prefix": env.str("HERALD_CHANNEL_PREFIX", default="herald"),
            },
        }
    }
else:
    # One process only (docs/deployment.md: more than one needs REDIS_URL): groups live in this
    # process's memory. Its defaults would drop a socket's group membership after a day and,
    # silently, every message to a socket past 100 queued (channels ``layers.py``): either would
    # leave a socket open but deaf (docs/reliability.md).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"group_expiry": 10 * 365 * 86_400, "capacity": 100_000},
        }
    }

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    CACHES = {
        # One client per process, not one per async context (config/cache.py).
        "default": {
            "BACKEND": "config.cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            # Bounded waits (a hung Redis must not hang requests) and the layer's retries.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5, "retry": _REDIS_RETRY},
        }
    }

# Where digests go: django-environ's EMAIL_URL syntax (smtp+tls://user:pass@host:587,
# smtp+ssl://...:465, smtp://..., consolemail://, filemail:///path); the console by default.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("HERALD_EMAIL_FROM", default="Herald <herald@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.LoginSessionJWTAuthentication",
        "accounts.authentication.ServiceKeyAuthentication",  # Authorization: Api-Key
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        # A service key reaches only the routes that name a scope it holds (docs/security.md).
        "accounts.permissions.ServiceKeyScopes",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.HeraldJSONParser"],
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    # Per-user write rates (config/throttling.py, docs/security.md "Limits"), counted in the
    # default cache: Redis with REDIS_URL, so every process counts together.
    "DEFAULT_THROTTLE_CLASSES": ["config.throttling.ScopedWriteThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "messages": env.str("HERALD_THROTTLE_MESSAGES", default="20/s"),
        "rooms": env.str("HERALD_THROTTLE_ROOMS", default="30/m"),
        "ws_tickets": env.str("HERALD_THROTTLE_WS_TICKETS", default="60/m"),
        "token_refresh": env.str("HERALD_THROTTLE_TOKEN_REFRESH", default="30/m"),
        "notifications": env.str("HERALD_THROTTLE_NOTIFICATIONS", default="20/s"),
    },
    # REMOTE_ADDR is the client: daphne --proxy-headers puts the proxy's X-Forwarded-For there
    # (docs/deployment.md). DRF's default (None) would trust a client's own X-Forwarded-For.
    "NUM_PROXIES": 0,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI 3 at /api/schema/, Swagger UI at /api/docs/ (docs/protocol.md, "HTTP API"). Both are
# public: the API's shape is no secret, and every route it describes still needs its own
# credentials.
SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": (
        "Real-time chat and notifications. Authenticate with `Authorization: Bearer <access "
        "JWT>` from `POST /api/auth/token/` (or the session cookie plus CSRF token). Every error "
        "is `{detail, code}`. The WebSocket protocol at `/ws/` is described in docs/protocol.md."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TAGS": [
        {"name": "auth", "description": "Tokens, WebSocket tickets and login sessions."},
        {"name": "me", "description": "The caller."},
        {"name": "notifications", "description": "Send (services), list and read notifications."},
        {"name": "rooms", "description": "Chat rooms, their members and their messages."},
        {"name": "webhooks", "description": "Services' webhook endpoints (service keys)."},
    ],
}

HERALD = {
    "ACCESS_TOKEN_LIFETIME": env.int("HERALD_ACCESS_TOKEN_LIFETIME", default=300),
    "REFRESH_TOKEN_LIFETIME": env.int("HERALD_REFRESH_TOKEN_LIFETIME", default=1_209_600),
    "WS_MAX_MESSAGE_BYTES": env.int("HERALD_WS_MAX_MESSAGE_BYTES", default=65_536),
    "WS_RATE": env.float("HERALD_WS_RATE", default=10.0),
    "WS_BURST": env.int("HERALD_WS_BURST", default=20),
    "WS_HEARTBEAT": env.int("HERALD_WS_HEARTBEAT", default=25),
    # A slow consumer (docs/reliability.md): a socket with more than WS_MAX_BACKLOG_BYTES
    # written but not taken by its client waits for it to drain, and closes with 4503 if it has
    # not within WS_SEND_TIMEOUT s. daphne itself would buffer without limit.
    "WS_MAX_BACKLOG_BYTES": env.int("HERALD_WS_MAX_BACKLOG_BYTES", default=1_048_576),
    "WS_SEND_TIMEOUT": env.float("HERALD_WS_SEND_TIMEOUT", default=10.0),
    "ALLOWED_ORIGINS": env.list("HERALD_ALLOWED_ORIGINS", default=[]),
    "WS_TICKET_LIFETIME": env.int("HERALD_WS_TICKET_LIFETIME", default=30),
    # Presence (chat/presence.py): each subscribed socket's entry lives PRESENCE_TTL s
    # unless refreshed, every PRESENCE_REFRESH s; a killed process's users drop out of rooms
    # within about TTL + REFRESH s (docs/protocol.md, "Presence").
    "PRESENCE_TTL": env.float("HERALD_PRESENCE_TTL", default=30.0),
    "PRESENCE_REFRESH": env.float("HERALD_PRESENCE_REFRESH", default=10.0),
    # Joins and leaves of a room are collected this long, then sent as one frame (at most
    # 0.25 s, docs/protocol.md); rooms of more members than FULL_LIMIT send diffs only to
    # sockets that sent ``presence.watch``, and a subscribe's answer lists at most PAGE of
    # their online members.
    "PRESENCE_WINDOW": env.float("HERALD_PRESENCE_WINDOW", default=0.2),
    "PRESENCE_FULL_LIMIT": env.int("HERALD_PRESENCE_FULL_LIMIT", default=200),
    "PRESENCE_PAGE": env.int("HERALD_PRESENCE_PAGE", default=100),
    "REDIS_PREFIX": env.str("HERALD_CHANNEL_PREFIX", default="herald"),
    # Open sockets per user and per client IP, counted across processes (realtime/caps.py);
    # one more is accepted only to be closed with 4429. 0: no cap.
    "WS_MAX_PER_USER": env.int("HERALD_WS_MAX_PER_USER", default=50),
    "WS_MAX_PER_IP": env.int("HERALD_WS_MAX_PER_IP", default=500),
    # Bearer token a Prometheus scraper sends to /metrics; unset: staff sessions only.
    "METRICS_TOKEN": env.str("HERALD_METRICS_TOKEN", default=""),
    # Email digests (docs/protocol.md, "Email digests"): a notification unread this long (s) is due.
    "EMAIL_AFTER": env.int("HERALD_EMAIL_AFTER", default=900),
    # The address people open Herald at, for links in emails and pushes.
    "PUBLIC_URL": env.str("HERALD_PUBLIC_URL", default="http://localhost:8000"),
}

# Background work (config/tasks.py, docs/deployment.md "Background workers"): a queue in this
# database, run by ``manage.py herald_worker`` processes. A task RUNNING longer than
# HERALD_TASK_LEASE s is taken for lost (its worker died) and run again.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
HERALD["TASK_LEASE"] = env.float("HERALD_TASK_LEASE", default=300.0)
# Outbound webhooks (notifications/webhooks.py, docs/protocol.md "Webhooks"): attempts per
# delivery and the first retry's delay (s, doubling, at most an hour), the receiver's time
# limit (s), failed attempts in a row that disable an endpoint; ALLOW_PRIVATE lets endpoints
# resolve to loopback and private addresses (tests, closed networks; SSRF otherwise).
HERALD["WEBHOOK_ATTEMPTS"] = env.int("HERALD_WEBHOOK_ATTEMPTS", default=8)
HERALD["WEBHOOK_BACKOFF"] = env.float("HERALD_WEBHOOK_BACKOFF", default=60.0)
HERALD["WEBHOOK_TIMEOUT"] = env.float("HERALD_WEBHOOK_TIMEOUT", default=10.0)
HERALD["WEBHOOK_DISABLE_AFTER"] = env.int("HERALD_WEBHOOK_DISABLE_AFTER", default=20)
HERALD["WEBHOOK_ALLOW_PRIVATE"] = env.bool("HERALD_WEBHOOK_ALLOW_PRIVATE", default=False)
# Failed logins (django-axes, docs/security.md "Limits"): LOGIN_FAILURES wrong passwords for one
# username from one IP lock that pair out for LOGIN_LOCKOUT s, on the token endpoint, the web
# login and the admin's. A success resets the count. Counted in the default cache (Redis with
# REDIS_URL: every process together; without it, the one process's memory).
AXES_HANDLER = "config.throttling.LoginFailureCache"  # axes' cache handler, Redis outages let by
AXES_FAILURE_LIMIT = env.int("HERALD_LOGIN_FAILURES", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("HERALD_LOGIN_LOCKOUT", default=900))
# The pair, not the username alone: another IP's failures never lock a user out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Failures during a lockout do not extend it: it ends LOGIN_LOCKOUT s after it began.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "config.throttling.lockout_response"
AXES_CLIENT_IP_CALLABLE = "config.throttling.client_ip"
AXES_ENABLE_ADMIN = False  # the cache handler stores no attempts for the admin to list
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=HERALD["ACCESS_TOKEN_LIFETIME"]),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=HERALD["REFRESH_TOKEN_LIFETIME"]),
    "ALGORITHM": "HS256",
    "ROTATE_REFRESH_TOKENS": True,
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
}

# Every record goes through the root logger's one handler: the redaction filter, then structlog's
# JSON (or console) rendering with the bound connection context (config/logging.py). Django's
# own "django" handler (DEFAULT_LOGGING's console, active in DEBUG) is replaced by none, so its
# records reach the root handler once, filtered, instead of also being printed unfiltered.
LOG_FORMAT = env.str("HERALD_LOG_FORMAT", default="console" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "config.logging.RedactSecretsFilter"}},
    "formatters": {
        "json": {"()": "config.logging.json_formatter"},
        "console": {"()": "config.logging.console_formatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("HERALD_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}

# Web Push (notifications/push.py; docs/security.md, "Web Push"): the VAPID key pair that signs
# every push (RFC 8292), as base64url of the raw 32-byte private key (what `web-push
# generate-vapid-keys` prints) or PEM, and the contact the push services see (`mailto:` or
# `https:`). dev.py generates a key when unset; production requires both.
HERALD["VAPID_PRIVATE_KEY"] = env.str("HERALD_VAPID_PRIVATE_KEY", default="")
HERALD["VAPID_SUBJECT"] = env.str("HERALD_VAPID_SUBJECT", default="")
# Push endpoints must be https; plain http to a loopback address (a local push service) only
# with this set, or in DEBUG.
HERALD["PUSH_ALLOW_LOOPBACK"] = env.bool("HERALD_WEBHOOK_ALLOW_PRIVATE", default=DEBUG)
