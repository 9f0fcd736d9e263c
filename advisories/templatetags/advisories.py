"""The exposure panels of the version and image pages, as inclusion tags.

The catalogue's pages load them with `{% load advisories %}`: templates may use an app's
tags without the catalogue importing it. Each tag costs a fixed number of queries.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse

from advisories import act
from advisories.matching import COVERED, UNKNOWN, Coverage, coverage
from advisories.models import RANK, EcosystemImport, Exposure, VersionCoverage
from catalog.models import Image, ImageVersion

register = template.Library()


def _exposures(version_id: int) -> list[Exposure]:
    return list(
        Exposure.objects.filter(version_id=version_id)
        .select_related("advisory")
        .order_by("-fixed_version", "advisory__osv_id", "package")
    )


def _sorted(rows: list[Exposure]) -> list[Exposure]:
    return sorted(rows, key=lambda e: (-RANK.get(e.severity, 0), e.advisory.osv_id, e.package))


@register.inclusion_tag("advisories/version_exposures.html")
def version_exposures(
    version: ImageVersion, previous: ImageVersion | None = None
) -> dict[str, Any]:
    """A version's exposures, and against the previous version which are gone or remain."""
    state = coverage(version.image, version.manifest or [])
    if state.status == COVERED and not VersionCoverage.objects.filter(version=version).exists():
        # Not matched yet (its matching, queued when its build recorded it, has not run, or
        # failed and waits for the daily run): not "no exposure" until it has been matched.
        state = Coverage(UNKNOWN, "not matched against the advisories yet")
    rows = _sorted(_exposures(version.pk)) if state.status == COVERED else []
    gone: list[Exposure] = []
    remaining_unfixed = [e for e in rows if not e.fixed_version]
    if previous is not None and state.status == COVERED:
        now = {(e.advisory_id, e.package) for e in rows}
        gone = [
            e for e in _sorted(_exposures(previous.pk)) if (e.advisory_id, e.package) not in now
        ]
    return {
        "coverage": state,
        "exposures": rows,
        "fixable": sum(1 for e in rows if e.fixed_version),
        "previous": previous,
        "gone": gone,
        "remaining_unfixed": remaining_unfixed,
        "imports": list(EcosystemImport.objects.filter(last_ok=False)),
    }


@register.inclusion_tag("advisories/image_exposures.html")
def image_exposures(image: Image) -> dict[str, Any]:
    """The current release's exposures per architecture, and the days exposed."""
    current = act.current_rows([image.pk])
    counts: dict[int, dict[str, int]] = {row["id"]: {"total": 0, "fixable": 0} for row in current}
    for version_id, fixed in Exposure.objects.filter(version_id__in=list(counts)).values_list(
        "version_id", "fixed_version"
    ):
        counts[version_id]["total"] += 1
        counts[version_id]["fixable"] += bool(fixed)
    # The coverage the last matching recorded: the page never reads a manifest.
    statuses = dict(
        VersionCoverage.objects.filter(version_id__in=list(counts)).values_list(
            "version_id", "status"
        )
    )
    rows = [
        {
            **row,
            "url": reverse("catalog:version", args=[image.label, row["arch"], row["name"]]),
            "status": statuses.get(row["id"], UNKNOWN),
            **counts[row["id"]],
        }
        for row in current
    ]
    return {
        "rows": rows,
        "days_exposed": act.days_exposed([image.pk]).get(image.pk, 0),
        "threshold": act.min_severity(image),
        "default_threshold": settings.VULN_REBUILD_MIN_SEVERITY,
    }
