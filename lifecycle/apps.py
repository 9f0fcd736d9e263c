from __future__ import annotations

import importlib

from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """What happens over time: releases, refresh triggers, deprecation, notices."""

    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from catalog.schedules import SCHEDULES
        from lifecycle import alerts, zones

        zones.connect()
        alerts.connect()

        # Each concern lists its recurring tasks in lifecycle/schedules_<concern>.py.
        for concern in ("releases", "notices", "triggers", "alerts"):
            try:
                module = importlib.import_module(f"lifecycle.schedules_{concern}")
            except ModuleNotFoundError:
                continue
            for definition in module.SCHEDULES:
                if definition not in SCHEDULES:
                    SCHEDULES.append(definition)
