from __future__ import annotations

from django.apps import AppConfig


class BuildsConfig(AppConfig):
    """How an image is made: builds and their stages.

    Its recurring tasks are listed in builds/schedules.py.
    """

    name = "builds"
    default_auto_field = "django.db.models.BigAutoField"
