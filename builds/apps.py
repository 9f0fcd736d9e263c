from __future__ import annotations

from django.apps import AppConfig


class BuildsConfig(AppConfig):
    """How an image is made: builds and their stages."""

    name = "builds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.models import Schedule

        from catalog.schedules import SCHEDULES, ScheduleDefinition

        stale = ScheduleDefinition(
            name="builds.requeue_stale_builds",
            func="builds.tasks.requeue_stale_builds",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        )
        stale_test_runs = ScheduleDefinition(
            name="builds.requeue_stale_test_runs",
            func="builds.tasks.requeue_stale_test_runs",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        )
        janitor = ScheduleDefinition(
            name="builds.janitor",
            func="builds.janitor.janitor_task",
            schedule_type=Schedule.DAILY,
        )
        for definition in (stale, stale_test_runs, janitor):
            if definition not in SCHEDULES:
                SCHEDULES.append(definition)
