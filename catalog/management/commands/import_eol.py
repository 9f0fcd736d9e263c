"""`manage.py import_eol`: import the upstream EOL dates from endoflife.date now."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.eol import DEFAULT_MAX_RETRY_WAIT, import_all


class Command(BaseCommand):
    """Import every product once; print one line per product; fail if any product failed."""

    help = "Import the upstream end-of-life dates of the OS images from endoflife.date."

    def add_arguments(self, parser: CommandParser) -> None:
        """--base-url points at a mirror or a test server; --timeout at a slow network."""
        parser.add_argument(
            "--base-url",
            default=None,
            help=f"endoflife.date base URL (default: {settings.EOL_API_BASE_URL}).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help=f"Seconds to wait for each answer (default: {settings.EOL_API_TIMEOUT}).",
        )
        parser.add_argument(
            "--max-retry-wait",
            type=float,
            default=DEFAULT_MAX_RETRY_WAIT,
            help="Longest Retry-After honoured on HTTP 429 before giving up (seconds).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the import; a CommandError makes manage.py exit with status 1."""
        results = import_all(
            base_url=options["base_url"],
            timeout=options["timeout"],
            max_retry_wait=options["max_retry_wait"],
        )
        if not results:
            self.stdout.write("No OS image follows an endoflife.date product: nothing to do.")
            return
        for result in results:
            line = f"{'OK' if result.ok else 'ERROR'} {result.product}: {result.message}"
            self.stdout.write(self.style.SUCCESS(line) if result.ok else self.style.ERROR(line))
            for warning in result.warnings:
                self.stdout.write(self.style.WARNING(f"WARNING {result.product}: {warning}"))
        failed = [result.product for result in results if not result.ok]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(results)} product(s) failed: {', '.join(failed)}"
            )
