"""Recurring tasks of the notices: a daily usage refresh and a frequent send of what is due."""

from __future__ import annotations

import datetime as dt

from django_q.models import Schedule

from catalog.schedules import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = [
    ScheduleDefinition(
        name="lifecycle.refresh_usage",
        func="lifecycle.tasks_notices.refresh_usage_task",
        schedule_type=Schedule.DAILY,
        # Before the morning's notices go out (NOTICE_SEND_HOUR defaults to 8).
        first_run_at=dt.time(4, 30),
    ),
    ScheduleDefinition(
        name="lifecycle.send_due_notices",
        func="lifecycle.tasks_notices.send_due_notices_task",
        schedule_type=Schedule.MINUTES,
        minutes=5,
    ),
]
