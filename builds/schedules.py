"""Recurring tasks of the builds app (collected by catalog.schedules).

- every minute, builds and test runs whose worker stopped sending heartbeats are sent again;
- daily, the janitor deletes what the factory left in the cloud and no longer needs.
"""

from __future__ import annotations

from django_q.models import Schedule

from catalog.schedules import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = [
    ScheduleDefinition(
        name="builds.requeue_stale_builds",
        func="builds.tasks.requeue_stale_builds",
        schedule_type=Schedule.MINUTES,
        minutes=1,
    ),
    ScheduleDefinition(
        name="builds.requeue_stale_test_runs",
        func="builds.tasks.requeue_stale_test_runs",
        schedule_type=Schedule.MINUTES,
        minutes=1,
    ),
    ScheduleDefinition(
        name="builds.janitor",
        func="builds.janitor.janitor_task",
        schedule_type=Schedule.DAILY,
    ),
]
