"""`manage.py adopt_marketplace`: record the cloud's existing Marketplace images as adopted
versions (lifecycle.adoption). Read-only towards the cloud; a second run changes nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.retries import CloudError
from lifecycle.adoption import adopt


class Command(BaseCommand):
    """Adopt, print what was adopted and what was not; fail only when the cloud cannot be read."""

    help = (
        "Read the cloud's Marketplace (SCW_API_URL: real Scaleway's public Marketplace or "
        "localcloud) and record its versions and local images as adopted (not built here)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--label",
            action="append",
            dest="labels",
            default=None,
            help="Adopt only this Marketplace label (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        labels = set(options["labels"]) if options["labels"] else None
        try:
            report = adopt(labels=labels)
        except CloudError as exc:
            raise CommandError(
                f"The Marketplace cannot be read; nothing was recorded. {exc}"
            ) from exc
        for name in report.adopted:
            self.stdout.write(f"ADOPTED {name}")
        for label in report.labels_found:
            self.stdout.write(
                self.style.WARNING(f"NO IMAGE {label}: listed for a manager to map or ignore")
            )
        for problem in report.problems:
            self.stdout.write(self.style.WARNING(f"SKIPPED {problem}"))
        self.stdout.write(self.style.SUCCESS(report.summary()))
