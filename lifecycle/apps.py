from __future__ import annotations

from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """What happens over time: releases, refresh triggers, deprecation, notices."""

    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"
