"""`manage.py register_schedules`: create or update the factory's recurring tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from catalog.schedules import register_schedules


class Command(BaseCommand):
    """Register every app's schedules (`catalog.schedules.all_schedules`); safe on each deploy."""

    help = "Create or update the django-q2 schedules (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        """Print one line per schedule: created, updated or kept, with its next run."""
        for registration in register_schedules():
            schedule = registration.schedule
            next_run = (
                timezone.localtime(schedule.next_run).strftime("%Y-%m-%d %H:%M %Z")
                if schedule.next_run
                else "not planned"
            )
            self.stdout.write(
                f"{registration.action} {registration.name}: {schedule.func} "
                f"({schedule.get_schedule_type_display()}, next run {next_run})"
            )
