"""The catalogue feed's `security` section of each image (added by AdvisoriesConfig.ready).

Per current version (one per architecture): whether its exposure is known, as the last
matching recorded it ("covered"; "unknown" without source package names or not matched yet;
"not covered"), how many exposures it has, how many with a fix, and the advisory ids with a
fix; and `fixable_exposure_since`, the first sighting
of the oldest fixable exposure still in a current version: the days exposed are counted from
it, since the feed holds nothing that changes by itself. Two queries whatever the number of
images; the manifest is not read.
"""

from __future__ import annotations

from typing import Any

from advisories.act import current_rows
from advisories.matching import COVERED, UNKNOWN
from advisories.models import Exposure, VersionCoverage


def security_section(image_ids: list[int] | None) -> dict[int, dict[str, Any]]:
    current = current_rows(image_ids)
    exposures: dict[int, list[tuple[str, str, Any]]] = {}
    for version_id, fixed, first_seen, osv_id in (
        Exposure.objects.filter(version_id__in=[row["id"] for row in current])
        .order_by("advisory__osv_id", "id")
        .values_list("version_id", "fixed_version", "first_seen", "advisory__osv_id")
    ):
        exposures.setdefault(version_id, []).append((fixed, osv_id, first_seen))
    sections: dict[int, dict[str, Any]] = {}
    for row in current:
        # Not matched yet: unknown, never "no exposure".
        status = row["exposure_coverage__status"] or UNKNOWN
        found = exposures.get(row["id"], []) if status == COVERED else []
        fixable = [(osv_id, seen) for fixed, osv_id, seen in found if fixed]
        section = sections.setdefault(
            row["image_id"], {"security": {"current": [], "fixable_exposure_since": None}}
        )["security"]
        section["current"].append(
            {
                "arch": row["arch"],
                "version": row["name"],
                "status": status,
                "exposures": len(found) if status == COVERED else None,
                "fixable": len(fixable) if status == COVERED else None,
                "fixable_advisories": sorted({osv_id for osv_id, _ in fixable}),
            }
        )
        oldest = min((seen for _, seen in fixable), default=None)
        if oldest is not None:
            since = section["fixable_exposure_since"]
            day = oldest.date().isoformat()
            section["fixable_exposure_since"] = min(since, day) if since else day
    return sections


FINGERPRINT_COLUMNS: list[tuple[Any, tuple[str, ...]]] = [
    (
        Exposure.objects.all(),
        ("id", "version_id", "advisory_id", "package", "fixed_version", "first_seen"),
    ),
    (VersionCoverage.objects.all(), ("id", "version_id", "status")),
]
