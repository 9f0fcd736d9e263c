"""Recurring task of the team alerts: the daily digest, once managers are about to arrive."""

from __future__ import annotations

import datetime as dt

from django_q.models import Schedule

from catalog.schedules import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = [
    ScheduleDefinition(
        name="lifecycle.daily_digest",
        func="lifecycle.tasks_alerts.daily_digest_task",
        schedule_type=Schedule.DAILY,
        # After the EOL import (5:15) and the usage refresh (4:30), before the day starts.
        first_run_at=dt.time(7, 30),
    ),
]
