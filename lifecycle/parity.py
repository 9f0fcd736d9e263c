"""Zone parity: every current version available in every enabled zone, on every storage type
of its image, and offered in the Marketplace there.

`check()` (daily, `lifecycle.zone_parity`, and "Check now" on the zone parity page) compares
what should be with what the cloud says, one zone at a time:
- the cloud's Instance images of the zone (one listing per zone, not one call per image):
  the recorded image still exists and is available;
- the Marketplace: the zone's local images of the current versions (the localcloud
  publisher), or the image's `factory:released` tag (the feed-only publisher) name it.
Each difference found in the cloud is a `ZoneParityGap`. A zone whose listing failed keeps
its last rows and gets a "could not be checked" row with the API's words, so a cloud outage
never hides a known gap nor invents one. What the dashboard knows is not published (no
available LocalImage) needs no cloud call: `live_gaps()` reads it at any time, and the home
page shows it as it happens.

`publish_missing()` ("Publish the missing", after a confirmation) sends, per (version, zone)
with a gap, the same task as enabling a zone: publish there (reusing what exists, making
what is missing), test there, and offer each storage type once every check passed on it.
A version without a build or without its artefact cannot be published again: it is
skipped with the reason (rebuild the image).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from builds.publish import storage_types_of
from catalog import audit
from catalog.choices import LocalImageState, StorageType
from catalog.current import current_versions
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, publisher
from cloud.retries import CloudError, call
from lifecycle import zones
from lifecycle.models import ParityProblem, ZoneParityGap

log = logging.getLogger(__name__)

CHECKED_ACTION = "zone.parity_checked"
FIX_QUEUED_ACTION = "zone.parity_fix_queued"


@dataclass
class Expected:
    """One (version, zone, storage type) that should be available and offered."""

    version: ImageVersion
    zone: Zone
    storage_type: str
    local: LocalImage | None = None


@dataclass
class Report:
    zones: int = 0
    gaps: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"zone parity: {self.gaps} difference(s) in the cloud, {self.zones} zone(s)"
        return text + (f"; {len(self.errors)} zone(s) not checked" if self.errors else "")


def expected() -> dict[str, list[Expected]]:
    """What every enabled zone should hold, by zone code (three queries in all)."""
    enabled = list(Zone.objects.filter(enabled=True).order_by("code"))
    versions = current_versions()
    locals_ = {
        (li.version_id, li.zone_id, li.storage_type): li
        for li in LocalImage.objects.filter(
            version__in=[v.pk for v in versions], zone__in=[z.pk for z in enabled]
        )
    }
    wanted: dict[str, list[Expected]] = {zone.code: [] for zone in enabled}
    for zone in enabled:
        for version in versions:
            for kind in storage_types_of(version):
                local = locals_.get((version.pk, zone.pk, kind))
                wanted[zone.code].append(Expected(version, zone, kind, local))
    return wanted


def _is_published(item: Expected) -> bool:
    local = item.local
    return bool(
        local is not None and local.state == LocalImageState.AVAILABLE and local.provider_image_id
    )


def live_gaps(wanted: dict[str, list[Expected]] | None = None) -> list[ZoneParityGap]:
    """The (current version, enabled zone, storage type)s with no available local image, as
    the dashboard records them now (unsaved rows; no cloud call)."""
    gaps = []
    for items in (wanted if wanted is not None else expected()).values():
        for item in items:
            if _is_published(item):
                continue
            local = item.local
            state = local.get_state_display().lower() if local is not None else "never published"
            error = f" ({local.error[:300]})" if local is not None and local.error else ""
            gaps.append(
                ZoneParityGap(
                    version=item.version,
                    zone=item.zone,
                    storage_type=item.storage_type,
                    problem=ParityProblem.NOT_PUBLISHED,
                    detail=f"{StorageType(item.storage_type).label}: {state}{error}",
                )
            )
    return gaps


# --- reading the cloud --------------------------------------------------------------------------


def _images_in(zone: str) -> dict[str, Any]:
    """The zone's Instance images of the project, by id (one paginated listing)."""
    api = clients.instance_api()
    found = call(api.list_images_all, zone=zone, what=f"list images in {zone}")
    return {image.id: image for image in found}


def _offered_in(zone: str, images: dict[str, Any]) -> set[str]:
    """The ids of the Instance images customers are offered in the zone."""
    if publisher.backend_name() == "feed":
        return {i for i, image in images.items() if publisher.RELEASED_TAG in (image.tags or [])}
    market = clients.marketplace_api()
    found = call(market.list_local_images_all, zone=zone, what=f"list local images in {zone}")
    return {local.id for local in found}


def _gaps_of(
    wanted: Iterable[Expected], images: dict[str, Any], offered: set[str]
) -> list[ZoneParityGap]:
    """What the cloud says of the published ones (the unpublished are `live_gaps`)."""
    gaps = []
    for item in wanted:
        if not _is_published(item):
            continue
        local = item.local
        assert local is not None
        image_id = local.provider_image_id
        label = StorageType(item.storage_type).label
        if image_id not in images:
            problem = ParityProblem.IMAGE_GONE
            detail = f"{label}: image {image_id} is not in the zone any more"
        elif images[image_id].state != "available":
            problem = ParityProblem.IMAGE_UNAVAILABLE
            detail = f"{label}: image {image_id} is {images[image_id].state}"
        elif image_id not in offered:
            problem = ParityProblem.NOT_OFFERED
            detail = f"{label}: image {image_id} is not offered in the Marketplace"
        else:
            continue
        gaps.append(
            ZoneParityGap(
                version=item.version,
                zone=item.zone,
                storage_type=item.storage_type,
                problem=problem,
                detail=detail,
            )
        )
    return gaps


def check() -> Report:
    """Compare every enabled zone with what the cloud says; replace each checked zone's rows
    (a zone that could not be read keeps its rows, plus one saying why)."""
    report = Report()
    wanted = expected()
    by_code = {z.code: z for z in Zone.objects.filter(code__in=list(wanted))}
    now = timezone.now()
    for code, items in wanted.items():
        report.zones += 1
        try:
            images = _images_in(code) if items else {}
            offered = _offered_in(code, images) if items else set()
        except CloudError as exc:
            report.errors.append(f"{code}: {exc}")
            log.warning("zone parity: %s not checked: %s", code, exc)
            with transaction.atomic():
                ZoneParityGap.objects.filter(
                    zone__code=code, problem=ParityProblem.NOT_CHECKED
                ).delete()
                ZoneParityGap.objects.create(
                    zone=by_code[code],
                    problem=ParityProblem.NOT_CHECKED,
                    detail=f"The last check could not read the zone: {exc}",
                    found_at=now,
                )
            continue
        gaps = _gaps_of(items, images, offered)
        for gap in gaps:
            gap.found_at = now
        with transaction.atomic():
            ZoneParityGap.objects.filter(zone__code=code).delete()
            ZoneParityGap.objects.bulk_create(gaps)
        report.gaps += len(gaps)
    # Rows of zones disabled since: nothing is expected there any more.
    ZoneParityGap.objects.exclude(zone__code__in=list(wanted)).delete()
    audit.record(
        CHECKED_ACTION, after={"gaps": report.gaps, "errors": report.errors}, message=str(report)
    )
    return report


# --- fixing -------------------------------------------------------------------------------------


@dataclass
class Fix:
    """What "Publish the missing" does for one (version, zone): its problems, or why not."""

    version: ImageVersion
    zone: Zone
    problems: list[str]
    skipped: str = ""


def cloud_gaps() -> list[ZoneParityGap]:
    """The last check's findings in the cloud, in enabled zones."""
    return list(
        ZoneParityGap.objects.filter(zone__enabled=True)
        .exclude(problem=ParityProblem.NOT_PUBLISHED)
        .select_related("version__image", "zone")
        .order_by("zone__code", "version__image__label", "version__arch", "storage_type")
    )


def _order(gap: ZoneParityGap) -> tuple[str, str, str, str]:
    version = gap.version
    assert version is not None
    return (version.image.label, version.arch, gap.zone.code, gap.storage_type)


def _why_not(version: ImageVersion) -> str:
    if zones.build_id_of(version) is None:
        return "it was not built here: rebuild the image to publish it again"
    if not version.artefact_path:
        return "its artefact is gone: rebuild the image to publish it again"
    return ""


def planned_fixes(gaps: list[ZoneParityGap] | None = None) -> list[Fix]:
    """What "Publish the missing" would do: one fix per (version, zone) with a gap (live or
    found in the cloud), in label, arch, zone order."""
    if gaps is None:
        gaps = live_gaps() + cloud_gaps()
    fixable = [g for g in gaps if g.version is not None and g.problem != ParityProblem.NOT_CHECKED]
    grouped: dict[tuple[int, int], Fix] = {}
    for gap in sorted(fixable, key=_order):
        version = gap.version
        assert version is not None
        key = (version.pk, gap.zone.pk)
        if key not in grouped:
            grouped[key] = Fix(version, gap.zone, [], _why_not(version))
        grouped[key].problems.append(f"{gap.get_problem_display()}: {gap.detail}")
    return list(grouped.values())


def publish_missing(user: Any) -> list[Fix]:
    """Queue (after commit) the publish, then tests, then offer of every planned fix whose
    version can be published again; audited. Returns every planned fix."""
    fixes = planned_fixes()
    for fix in fixes:
        if fix.skipped:
            continue
        build_id = zones.build_id_of(fix.version)
        assert build_id is not None  # fix.skipped says why otherwise
        zones.enqueue_publish(build_id, fix.version, fix.zone)
        audit.record(
            FIX_QUEUED_ACTION,
            actor=user,
            image=fix.version.image,
            target=fix.version,
            after={"zone": fix.zone.code, "problems": fix.problems},
            message=f"Publishing {fix.version} in {fix.zone.code} again (zone parity): "
            + "; ".join(fix.problems),
        )
    return fixes
