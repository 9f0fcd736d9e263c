"""The recurring django-q2 schedules of the factory, registered idempotently.

Each app that has recurring tasks declares them in its own `schedules.py`, as a module-level
`SCHEDULES` list of `ScheduleDefinition` (this module holds catalog's). `all_schedules`
collects those lists from every installed app, in INSTALLED_APPS order, the way Django's
admin finds `admin.py` modules; `register_schedules` (run by the `register_schedules` command
at deploy time) creates or updates them by their fixed name, so a restart or a second run
never duplicates a schedule.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass

from django.apps import apps
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules
from django_q.models import Schedule


@dataclass(frozen=True)
class ScheduleDefinition:
    """One recurring task: its fixed name is its identity in the Schedule table."""

    name: str
    func: str
    schedule_type: str
    minutes: int | None = None
    cluster: str | None = None
    # Local time of the first run; later runs follow schedule_type from there.
    first_run_at: dt.time | None = None

    def first_run(self, now: dt.datetime | None = None) -> dt.datetime:
        """The next occurrence of `first_run_at` (or now when it has none)."""
        now = timezone.localtime(now)
        if self.first_run_at is None:
            return now
        candidate = now.replace(
            hour=self.first_run_at.hour,
            minute=self.first_run_at.minute,
            second=0,
            microsecond=0,
        )
        return candidate if candidate > now else candidate + dt.timedelta(days=1)


SCHEDULES: list[ScheduleDefinition] = [
    ScheduleDefinition(
        name="catalog.import_eol",
        func="catalog.tasks.import_eol_task",
        schedule_type=Schedule.DAILY,
        # Early morning, after endoflife.date's nightly rebuild and before managers arrive.
        first_run_at=dt.time(5, 15),
    ),
]


def all_schedules() -> list[ScheduleDefinition]:
    """Every installed app's `SCHEDULES`, from its `schedules` module, in INSTALLED_APPS order.

    An app without a `schedules` module has no recurring task; an error inside one is raised.
    """
    autodiscover_modules("schedules")
    definitions: list[ScheduleDefinition] = []
    for app_config in apps.get_app_configs():
        module = sys.modules.get(f"{app_config.name}.schedules")
        if module is not None and hasattr(module, "SCHEDULES"):
            definitions.extend(module.SCHEDULES)
    return definitions


@dataclass(frozen=True)
class Registration:
    """What `register_schedules` did with one definition: created, updated or kept."""

    name: str
    action: str
    schedule: Schedule


def register_schedules(
    definitions: list[ScheduleDefinition] | None = None,
) -> list[Registration]:
    """Create the missing schedules and update the changed ones; never duplicate one.

    An existing schedule keeps its next_run, so a restart neither skips nor repeats a run.
    Duplicates left by hand or by an older release are removed.
    """
    registrations = []
    for definition in all_schedules() if definitions is None else definitions:
        wanted = {
            "func": definition.func,
            "schedule_type": definition.schedule_type,
            "minutes": definition.minutes,
            "cluster": definition.cluster,
            "repeats": -1,
        }
        with transaction.atomic():
            existing = list(
                Schedule.objects.select_for_update().filter(name=definition.name).order_by("id")
            )
            if len(existing) > 1:
                Schedule.objects.filter(pk__in=[s.pk for s in existing[1:]]).delete()
            differs = not existing or any(
                getattr(existing[0], key) != value for key, value in wanted.items()
            )
            if differs:
                schedule, created = Schedule.objects.update_or_create(
                    name=definition.name,
                    defaults=wanted,
                    create_defaults={**wanted, "next_run": definition.first_run()},
                )
            else:
                schedule, created = existing[0], False
        action = "created" if created else ("updated" if differs else "kept")
        registrations.append(Registration(definition.name, action, schedule))
    return registrations
