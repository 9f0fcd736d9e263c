from __future__ import annotations

from django.apps import AppConfig


class AdvisoriesConfig(AppConfig):
    """The distributions' own security advisories (OSV exports): import, exposure per
    version, and the security rebuilds they call for.

    Its recurring task is listed in advisories/schedules.py.
    """

    name = "advisories"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from advisories import feed as security
        from lifecycle import feed

        feed.add_section(security.security_section, security.FINGERPRINT_COLUMNS)

        from advisories import home

        home.register()
