"""Settings for the test suite: a fixed key, fast password hashing, static files from finders."""

from config import metrics_dir

from .base import *  # noqa: F403
from .base import BASE_DIR, HERALD, env

# This run's own metric files (concurrent runs on the machine never mix), removed at exit.
metrics_dir.configure(BASE_DIR, private=True)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="herald-test-key-" + "x" * 40)
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Web Push: a key of this run only (never a file), and plain-http push services on loopback
# (tests/support/pushservice.py).
if not HERALD["VAPID_PRIVATE_KEY"]:
    from base64 import urlsafe_b64encode

    from cryptography.hazmat.primitives.asymmetric import ec

    _vapid = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
    HERALD["VAPID_PRIVATE_KEY"] = urlsafe_b64encode(_vapid.to_bytes(32, "big")).decode()
HERALD["VAPID_SUBJECT"] = HERALD["VAPID_SUBJECT"] or "mailto:tests@herald.invalid"
HERALD["PUSH_ALLOW_LOOPBACK"] = True
