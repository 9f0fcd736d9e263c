from __future__ import annotations

from django.apps import AppConfig


class BuildsConfig(AppConfig):
    """How an image is made: builds and their stages."""

    name = "builds"
    default_auto_field = "django.db.models.BigAutoField"
