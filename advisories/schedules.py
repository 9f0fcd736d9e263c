"""Recurring tasks of the advisories app (collected by catalog.schedules)."""

from __future__ import annotations

import datetime as dt

from django_q.models import Schedule

from catalog.schedules import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = [
    ScheduleDefinition(
        name="advisories.import_osv",
        func="advisories.tasks.import_osv_task",
        schedule_type=Schedule.DAILY,
        # After the EOL import, before managers arrive.
        first_run_at=dt.time(5, 45),
    ),
]
