"""``manage.py herald_service_key create NAME --scope S [--scope S ...] [--user USERNAME]`` and
``manage.py herald_service_key revoke PREFIX`` (docs/security.md, "Service keys").

``create`` makes the service account (``--user``, default NAME) if it does not exist, then a
key; it prints the key's prefix and scopes, then the key itself, once, alone on the last line
(so ``| tail -n 1`` captures it). ``revoke`` revokes the key with that prefix at once.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Scope
from accounts.service_keys import ServiceKeyError, service_key_create, service_key_revoke


class Command(BaseCommand):
    help = "Create or revoke a service account's API key (scopes: " + ", ".join(Scope.values) + ")."

    def add_arguments(self, parser: ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a key; it is printed once.")
        create.add_argument("name", help="The key's name (and the service account's username).")
        create.add_argument(
            "--scope",
            action="append",
            default=[],
            dest="scopes",
            help=f"A scope the key holds; repeat for more: {', '.join(Scope.values)}.",
        )
        create.add_argument("--user", help="The service account's username (default: NAME).")
        revoke = actions.add_parser("revoke", help="Revoke the key with this prefix.")
        revoke.add_argument("prefix", help="The key's prefix: the part before the dot.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "create":
                row, key = service_key_create(
                    name=options["name"], scopes=options["scopes"], username=options["user"]
                )
                self.stdout.write(
                    f"Created key {row.prefix} for service account {row.user.username} "
                    f"(id {row.user.pk}), scopes: {' '.join(row.scopes)}. "
                    "Store the key now; it is not shown again:"
                )
                self.stdout.write(key)
            else:
                row = service_key_revoke(prefix=options["prefix"])
                self.stdout.write(f"Revoked key {row.prefix} ({row.name}).")
        except ServiceKeyError as error:
            raise CommandError(str(error)) from error
