from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_migrate


class CatalogConfig(AppConfig):
    """What is offered: zones, images, recipes, versions, upstream EOL."""

    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from catalog.roles import sync_roles, sync_staff_status

        post_migrate.connect(sync_roles, dispatch_uid="catalog.sync_roles")
        m2m_changed.connect(
            sync_staff_status,
            sender=get_user_model().groups.through,
            dispatch_uid="catalog.sync_staff_status",
        )
