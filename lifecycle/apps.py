from __future__ import annotations

from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """What happens over time: releases, refresh triggers, deprecation, notices.

    Its recurring tasks are listed in lifecycle/schedules.py.
    """

    name = "lifecycle"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from lifecycle import alerts, feed_stamp, zones

        zones.connect()
        alerts.connect()
        # After every migrate: the triggers behind the feed's ETag (lifecycle.feed_stamp).
        post_migrate.connect(feed_stamp.install, sender=self, dispatch_uid="feed_stamp")
