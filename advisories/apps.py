from __future__ import annotations

from django.apps import AppConfig


class AdvisoriesConfig(AppConfig):
    """The distributions' own security advisories (OSV exports): import, exposure per
    version, and the security rebuilds they call for.

    Its recurring task is listed in advisories/schedules.py. A version a build records is
    matched at once (builds' `version_recorded` queues advisories.tasks.match_version_task).
    """

    name = "advisories"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from advisories import feed as security
        from lifecycle import feed

        feed.add_section(security.security_section, security.FINGERPRINT_COLUMNS)

        from advisories import home

        home.register()

        from advisories import tasks
        from builds.signals import version_recorded

        version_recorded.connect(tasks.version_recorded, dispatch_uid="advisories.match_version")
