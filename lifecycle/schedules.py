"""Recurring tasks of the lifecycle app (collected by catalog.schedules).

- notices: a daily usage refresh, and a frequent send of what is due;
- refresh triggers and deprecation: deprecation transitions, the upstream check and the
  stale-image rebuilds, daily;
- zone parity: a daily check that every current version is in every enabled zone;
- team alerts: the daily digest, once managers are about to arrive.
"""

from __future__ import annotations

import datetime as dt

from django_q.models import Schedule

from catalog.schedules import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = [
    # Notices
    ScheduleDefinition(
        name="lifecycle.refresh_usage",
        func="lifecycle.tasks.refresh_usage_task",
        schedule_type=Schedule.DAILY,
        # Before the morning's notices go out (NOTICE_SEND_HOUR defaults to 8).
        first_run_at=dt.time(4, 30),
    ),
    ScheduleDefinition(
        name="lifecycle.send_due_notices",
        func="lifecycle.tasks.send_due_notices_task",
        schedule_type=Schedule.MINUTES,
        minutes=5,
    ),
    # Refresh triggers and deprecation
    ScheduleDefinition(
        name="lifecycle.deprecation_transitions",
        func="lifecycle.tasks.deprecation_transitions_task",
        schedule_type=Schedule.DAILY,
        # Just after midnight, so an image is deprecated on its date, not a day late.
        first_run_at=dt.time(0, 10),
    ),
    ScheduleDefinition(
        name="lifecycle.upstream_check",
        func="lifecycle.tasks.check_upstreams_task",
        schedule_type=Schedule.DAILY,
        # After the EOL import (05:15), before managers arrive.
        first_run_at=dt.time(5, 30),
    ),
    ScheduleDefinition(
        name="lifecycle.refresh_stale",
        func="lifecycle.tasks.queue_stale_rebuilds_task",
        schedule_type=Schedule.DAILY,
        # After the upstream check: an image it just rebuilt is not queued twice.
        first_run_at=dt.time(6, 0),
    ),
    # Zone parity
    ScheduleDefinition(
        name="lifecycle.zone_parity",
        func="lifecycle.tasks.zone_parity_task",
        schedule_type=Schedule.DAILY,
        # Before the digest, so that what the cloud lost is on the home page in the morning.
        first_run_at=dt.time(6, 30),
    ),
    # Team alerts
    ScheduleDefinition(
        name="lifecycle.daily_digest",
        func="lifecycle.tasks.daily_digest_task",
        schedule_type=Schedule.DAILY,
        # After the EOL import (5:15) and the usage refresh (4:30), before the day starts.
        first_run_at=dt.time(7, 30),
    ),
]
