from __future__ import annotations

from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """What happens over time: releases, refresh triggers, deprecation, notices.

    Its recurring tasks are listed in lifecycle/schedules.py.
    """

    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from lifecycle import alerts, zones

        zones.connect()
        alerts.connect()
