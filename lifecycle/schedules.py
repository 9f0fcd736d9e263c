"""The daily schedules of the refresh triggers and of deprecation (see catalog.schedules)."""

from __future__ import annotations

import datetime as dt

from django_q.models import Schedule

from catalog.schedules import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = [
    ScheduleDefinition(
        name="lifecycle.deprecation_transitions",
        func="lifecycle.tasks_triggers.deprecation_transitions_task",
        schedule_type=Schedule.DAILY,
        # Just after midnight, so an image is deprecated on its date, not a day late.
        first_run_at=dt.time(0, 10),
    ),
    ScheduleDefinition(
        name="lifecycle.upstream_check",
        func="lifecycle.tasks_triggers.check_upstreams_task",
        schedule_type=Schedule.DAILY,
        # After the EOL import (05:15), before managers arrive.
        first_run_at=dt.time(5, 30),
    ),
    ScheduleDefinition(
        name="lifecycle.refresh_stale",
        func="lifecycle.tasks_triggers.queue_stale_rebuilds_task",
        schedule_type=Schedule.DAILY,
        # After the upstream check: an image it just rebuilt is not queued twice.
        first_run_at=dt.time(6, 0),
    ),
]
