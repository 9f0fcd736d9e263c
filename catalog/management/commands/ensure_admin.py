"""Create the first administrator login, once, and print it."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an administrator account on first run and print its password."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, username: str, **options: object) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator exists already; no login created.")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        # Printed once on the operator's terminal; never stored in clear or logged.
        self.stdout.write(self.style.SUCCESS(f"Administrator login: {username} / {password}"))
        self.stdout.write("Change it after logging in (Admin → Users).")
