"""``manage.py herald_prune``: delete dead login sessions and expired Django sessions."""

from datetime import timedelta
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q
from django.utils import timezone

from accounts.models import LoginSession


class Command(BaseCommand):
    """Delete login sessions that can never be used again, older than ``--days`` (default 30):
    revoked ones, and ones whose refresh token expired; then Django's ``clearsessions``.

    Run it daily (cron, a Kubernetes CronJob). Tokens themselves are not stored: an access or
    refresh token of a deleted session fails its session check like a revoked one.
    """

    help = "Delete revoked and expired login sessions older than --days, and expired web sessions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="keep dead sessions this long")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, days: int, dry_run: bool, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(days=days)
        dead = LoginSession.objects.filter(
            Q(revoked_at__lt=cutoff)
            | Q(revoked_at__isnull=True, refresh_expires_at__lt=cutoff)
            | Q(kind=LoginSession.Kind.WEB, revoked_at__isnull=True, last_seen_at__lt=cutoff)
        )
        count = dead.count()
        if not dry_run:
            dead.delete()
            call_command("clearsessions")
        self.stdout.write(f"{'Would delete' if dry_run else 'Deleted'} {count} login session(s).")
