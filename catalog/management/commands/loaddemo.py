"""`manage.py loaddemo`: create or update the demo catalogue (safe to run again)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.demo import DEFAULT_DEMO_UPSTREAM_URL, load_demo
from config.env import env_str


class Command(BaseCommand):
    help = (
        "Create or update the demo catalogue: zones, categories, OS images, InstantApps, "
        "upstream sources, lifecycle dates and recipes. Manager edits are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--demo-upstream-url",
            default=env_str("DEMO_UPSTREAM_URL") or DEFAULT_DEMO_UPSTREAM_URL,
            help="Channel of the local demo Debian image (default: $DEMO_UPSTREAM_URL, else "
            f"{DEFAULT_DEMO_UPSTREAM_URL}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = load_demo(demo_upstream_url=options["demo_upstream_url"])
        except ValidationError as exc:
            # A bad URL is a usage error: show it without a traceback.
            raise CommandError(f"Demo catalogue not loaded: {'; '.join(exc.messages)}") from exc
        except ValueError as exc:  # an invalid demo recipe step, named by the loader
            raise CommandError(f"Demo catalogue not loaded: {exc}") from exc
        self.stdout.write(summary.line())
