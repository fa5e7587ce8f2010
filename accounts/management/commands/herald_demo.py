"""``manage.py herald_demo``: create the demo admin and users once, printing their credentials."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

DEMO_USERS = [("admin", True), ("alice", False), ("bob", False)]


class Command(BaseCommand):
    """Create ``admin`` (superuser), ``alice`` and ``bob`` with random passwords, first run only.

    Passwords are printed once and never stored in clear; a later run prints nothing new.
    ``admin`` may also send notifications over REST (``notifications.send_notification``).
    """

    help = "Create the demo admin and two demo users (first run only) and print their passwords."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        created = []
        for username, is_admin in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(9)
            if is_admin:
                user = User.objects.create_superuser(username=username, password=password)
                user.user_permissions.add(Permission.objects.get(codename="send_notification"))
            else:
                User.objects.create_user(username=username, password=password)
            created.append((username, password))
        if created:
            self.stdout.write("Demo accounts (shown this once):")
            for username, password in created:
                self.stdout.write(f"  {username:<6} {password}")
