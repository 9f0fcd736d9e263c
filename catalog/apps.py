from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CatalogConfig(AppConfig):
    """What is offered: zones, images, recipes, versions, upstream EOL."""

    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from catalog.roles import sync_roles

        post_migrate.connect(sync_roles, dispatch_uid="catalog.sync_roles")
