"""The home page's section of this app (lifecycle.home.add_section, from AppConfig.ready):
the exposures of what customers can get today that a rebuild would fix."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from advisories.models import Exposure
from catalog.choices import LIVE_IMAGE_STATES
from lifecycle import home
from lifecycle.models import Release


def fixable_exposures(today: dt.date) -> QuerySet[Exposure]:
    """Exposures with a fixed version, of versions released and not withdrawn, of live
    images; the most severe first."""
    return (
        Exposure.objects.exclude(fixed_version="")
        .filter(
            version__in=Release.objects.active().values("version_id"),
            version__image__state__in=LIVE_IMAGE_STATES,
        )
        .select_related("version__image", "advisory")
        .only(
            "id",
            "package",
            "installed_version",
            "fixed_version",
            "severity",
            "first_seen",
            "advisory__osv_id",
            "version__name",
            "version__arch",
            "version__image__label",
        )
        .order_by("first_seen", "version__image__label", "advisory__osv_id", "package")
    )


SECTION = home.Extra(
    key="exposures",
    title="Vulnerability exposures with a fix",
    queryset=fixable_exposures,
    rows=list,
    template="advisories/home_exposures.html",
)


def register() -> None:
    home.add_section(SECTION)
