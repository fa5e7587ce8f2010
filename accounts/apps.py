"""App configuration for accounts; connects the login/logout signal receivers."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Registers ``accounts.receivers`` once the app registry is ready."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401
