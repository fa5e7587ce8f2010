"""Settings for the test suite: a fixed key, fast password hashing, static files from finders."""

from config import metrics_dir

from .base import *  # noqa: F403
from .base import BASE_DIR, env

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
