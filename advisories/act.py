"""What the exposures call for: security rebuilds of current releases, and days exposed.

A current release (an image's latest open release) holding an exposure with a fix, at or
above the image's minimum severity (`ImagePolicy`, else VULN_REBUILD_MIN_SEVERITY), gets a
rebuild through the build queue with trigger "security" and the advisory ids in its reason:
at most one security rebuild per image and day, and none while a build of the image is
active.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from advisories.models import RANK, Exposure, ImagePolicy
from builds.choices import Trigger
from builds.models import Build
from builds.queue import request_build
from catalog.choices import VersionState
from catalog.current import LIVE_STATES, current_versions
from catalog.models import Image, ImageVersion
from lifecycle.models import Release

log = logging.getLogger(__name__)

MAX_IDS_IN_REASON = 10


@dataclass
class RebuildDecision:
    image: str
    queued: bool
    reason: str


def min_severity(image: Image, policies: dict[int, str] | None = None) -> str:
    own = (policies or {}).get(image.pk)
    if own is None and policies is None:
        own = (
            ImagePolicy.objects.filter(image=image)
            .values_list("rebuild_min_severity", flat=True)
            .first()
        )
    return own or settings.VULN_REBUILD_MIN_SEVERITY


def current_rows(image_ids: list[int] | None) -> list[dict[str, Any]]:
    """The current version of each image and arch: its latest open release."""
    released = ImageVersion.objects.filter(
        state=VersionState.RELEASED, released_at__isnull=False, image__state__in=LIVE_STATES
    ).filter(Exists(Release.objects.active().filter(version=OuterRef("pk"))))
    if image_ids is not None:
        released = released.filter(image_id__in=image_ids)
    rows = released.order_by("image_id", "arch", "-released_at", "-id").values(
        "id", "image_id", "arch", "name", "exposure_coverage__status"
    )
    seen: set[tuple[int, str]] = set()
    current = []
    for row in rows:
        key = (row["image_id"], row["arch"])
        if key not in seen:
            seen.add(key)
            current.append(dict(row))
    return current


def queue_security_rebuilds(now: dt.datetime | None = None) -> list[RebuildDecision]:
    """Queue a security rebuild for each current release with a fixable exposure at or above
    its image's threshold; say for each such image what was done."""
    now = now or timezone.now()
    policies = dict(
        ImagePolicy.objects.exclude(rebuild_min_severity="").values_list(
            "image_id", "rebuild_min_severity"
        )
    )
    open_versions = set(Release.objects.active().values_list("version_id", flat=True))
    decisions = []
    for version in current_versions():
        if version.pk not in open_versions:
            continue
        image = version.image
        threshold = RANK[min_severity(image, policies)]
        ids = sorted(
            {
                osv_id
                for osv_id, severity in Exposure.objects.filter(version=version)
                .exclude(fixed_version="")
                .values_list("advisory__osv_id", "severity")
                if RANK.get(severity, 0) >= threshold
            }
        )
        if not ids:
            continue
        shown = ", ".join(ids[:MAX_IDS_IN_REASON])
        if len(ids) > MAX_IDS_IN_REASON:
            shown += f" and {len(ids) - MAX_IDS_IN_REASON} more"
        reason = f"Security advisories with a fix: {shown}"
        day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
        if Build.objects.active().filter(image=image).exists():
            decisions.append(RebuildDecision(image.label, False, "a build is already active"))
            continue
        if Build.objects.filter(
            image=image, trigger=Trigger.SECURITY, created_at__gte=day_start
        ).exists():
            decisions.append(RebuildDecision(image.label, False, "already rebuilt today"))
            continue
        requested = request_build(image, version.arch, trigger=Trigger.SECURITY, reason=reason)
        decisions.append(RebuildDecision(image.label, requested.created, reason))
        log.info("security rebuild of %s: %s", image.label, reason)
    return decisions


def days_exposed(
    image_ids: list[int] | None = None, now: dt.datetime | None = None
) -> dict[int, int]:
    """Per image, the days its current release has held a fixable exposure (the oldest one
    still there), 0 when none."""
    now = now or timezone.now()
    versions = {row["id"]: row["image_id"] for row in current_rows(image_ids)}
    oldest: dict[int, dt.datetime] = {}
    rows = (
        Exposure.objects.filter(version_id__in=list(versions))
        .exclude(fixed_version="")
        .values_list("version_id", "first_seen")
    )
    for version_id, first_seen in rows:
        image_id = versions[version_id]
        if image_id not in oldest or first_seen < oldest[image_id]:
            oldest[image_id] = first_seen
    result: dict[int, int] = defaultdict(int)
    for image_id in versions.values():
        result[image_id] = (now - oldest[image_id]).days if image_id in oldest else 0
    return dict(result)
