"""Which version is exposed to which advisory, by the distribution's own version ordering.

Debian and Ubuntu advisories name source packages: a binary package is matched through the
`source` and `source_version` its manifest entry carries (recorded by the customize stage).
A Debian-family version whose manifest has none (built before, or adopted) is "unknown",
never "no exposure". AlmaLinux and Rocky Linux advisories name binary packages, matched by
the manifest's `name` and `version` (and its source name when present).
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from advisories.ecosystems import ecosystems_for, scheme_for
from advisories.models import Advisory, Exposure, VersionCoverage
from catalog.models import Image, ImageVersion
from lifecycle import versions as orderings

COVERED = "covered"
UNKNOWN = "unknown"
NOT_COVERED = "not covered"


@dataclass(frozen=True)
class Match:
    advisory_id: int
    package: str
    installed_version: str
    fixed_version: str
    severity: str


@dataclass
class Coverage:
    """Whether a version's exposure can be known, and the packages no advisory speaks for."""

    status: str
    reason: str
    not_covered_packages: list[str] = field(default_factory=list)


def _third_party(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.OSV_NOT_COVERED_PACKAGES)


def coverage(image: Image, manifest: list[dict[str, Any]]) -> Coverage:
    """Covered, unknown (no source names where they are needed) or not covered."""
    if not ecosystems_for(image):
        return Coverage(NOT_COVERED, "no OSV ecosystem for this distribution")
    others = sorted({str(p.get("name")) for p in manifest if _third_party(str(p.get("name")))})
    if scheme_for(image) == orderings.Scheme.DPKG and not any(p.get("source") for p in manifest):
        return Coverage(
            UNKNOWN,
            "the manifest holds no source package names (built before they were recorded)",
            others,
        )
    if not manifest:
        return Coverage(UNKNOWN, "no package manifest", others)
    return Coverage(COVERED, "", others)


def match_keys(scheme: str | None, entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(package name an advisory would use, installed version to compare) for one entry."""
    name = entry.get("name")
    if not isinstance(name, str) or _third_party(name):
        return []
    source, source_version = entry.get("source"), entry.get("source_version")
    if scheme == orderings.Scheme.DPKG:
        if (
            isinstance(source, str)
            and source
            and isinstance(source_version, str)
            and source_version
        ):
            return [(source, source_version)]
        return []
    keys = [(name, str(entry.get("version") or ""))]
    if isinstance(source, str) and source and source != name:
        keys.append((source, str(source_version or entry.get("version") or "")))
    return [key for key in keys if key[1]]


def affected(
    scheme: str, installed: str, ranges: Iterable[Iterable[Iterable[str]]], listed: Iterable[str]
) -> tuple[bool, str]:
    """(affected?, fixed version or "") for an installed version against OSV ranges.

    `introduced: 0` is the beginning of time; `fixed` and `limit` are excluded,
    `last_affected` included. An installed version listed in `versions` is affected.
    """
    compare = orderings.compare
    for events in ranges:
        introduced: str | None = None
        pairs: list[tuple[str | None, str | None, str | None]] = []
        for kind, value in events:
            if kind == "introduced":
                if introduced is not None:
                    pairs.append((introduced, None, None))
                introduced = value
            else:
                pairs.append((introduced, kind, value))
                introduced = None
        if introduced is not None:
            pairs.append((introduced, None, None))
        for start, end_kind, end in pairs:
            if start is not None and start != "0" and compare(scheme, installed, start) < 0:
                continue
            if end is None or end_kind is None:
                return True, ""
            order = compare(scheme, installed, end)
            if end_kind == "last_affected":
                if order <= 0:
                    return True, ""
            elif order < 0:
                return True, end if end_kind == "fixed" else ""
    if installed in set(listed):
        return True, ""
    return False, ""


def wanted_packages(images: Iterable[Image] | None = None) -> dict[str, set[str]]:
    """The package names advisories are kept for, by versioned ecosystem: every name a
    version's manifest could be matched on."""
    by_image = {
        image.pk: image
        for image in (
            images
            if images is not None
            else Image.objects.select_related("upstream", "base_image__upstream")
        )
    }
    wanted: dict[str, set[str]] = defaultdict(set)
    rows = ImageVersion.objects.filter(image_id__in=list(by_image)).values_list(
        "image_id", "manifest"
    )
    for image_id, manifest in rows.iterator(chunk_size=200):
        image = by_image[image_id]
        ecosystems = ecosystems_for(image)
        if not ecosystems:
            continue
        scheme = scheme_for(image)
        names = {key for entry in manifest or [] for key, _ in match_keys(scheme, entry)}
        for ecosystem in ecosystems:
            wanted[ecosystem] |= names
    return dict(wanted)


AdvisoryRow = tuple[int, Any, Any, str]  # id, ranges, versions, severity


def load_advisories(ecosystems: Iterable[str]) -> dict[tuple[str, str], list[AdvisoryRow]]:
    index: dict[tuple[str, str], list[AdvisoryRow]] = defaultdict(list)
    rows = Advisory.objects.filter(ecosystem__in=list(ecosystems)).values_list(
        "id", "ecosystem", "package", "ranges", "versions", "severity"
    )
    for pk, ecosystem, package, ranges, listed, severity in rows.iterator(chunk_size=2000):
        index[(ecosystem, package)].append((pk, ranges, listed, severity))
    return index


def match_manifest(
    image: Image,
    manifest: list[dict[str, Any]],
    index: dict[tuple[str, str], list[AdvisoryRow]],
    cache: dict[tuple[int, str], tuple[bool, str]] | None = None,
) -> list[Match]:
    """Every (advisory, installed package) pair of a manifest the ranges say is affected.

    `cache` keeps each (advisory, installed version)'s answer across manifests: versions of
    one image share most of their packages' versions."""
    cache = {} if cache is None else cache
    scheme = scheme_for(image)
    ecosystems = ecosystems_for(image)
    if scheme is None or not ecosystems:
        return []
    found: dict[tuple[int, str], Match] = {}
    for entry in manifest:
        for key, installed in match_keys(scheme, entry):
            if not orderings.is_valid_version(installed):
                continue
            for ecosystem in ecosystems:
                for pk, ranges, listed, severity in index.get((ecosystem, key), ()):
                    answer = cache.get((pk, installed))
                    if answer is None:
                        answer = cache[(pk, installed)] = affected(
                            scheme, installed, ranges, listed
                        )
                    hit, fixed = answer
                    if hit:
                        package = str(entry["name"])
                        found[(pk, package)] = Match(pk, package, installed, fixed, severity)
    return list(found.values())


def sync_exposures(version_id: int, matches: list[Match]) -> tuple[int, int]:
    """Make a version's stored exposures these matches, keeping each one's first sighting.

    Returns (added, removed)."""
    now = timezone.now()
    wanted = {(m.advisory_id, m.package): m for m in matches}
    with transaction.atomic():
        existing = {
            (e.advisory_id, e.package): e for e in Exposure.objects.filter(version_id=version_id)
        }
        gone = [e.pk for key, e in existing.items() if key not in wanted]
        if gone:
            Exposure.objects.filter(pk__in=gone).delete()
        changed = []
        for key, match in wanted.items():
            row = existing.get(key)
            if row is None:
                continue
            if (row.installed_version, row.fixed_version, row.severity) != (
                match.installed_version,
                match.fixed_version,
                match.severity,
            ):
                row.installed_version = match.installed_version
                row.fixed_version = match.fixed_version
                row.severity = match.severity
                changed.append(row)
        if changed:
            Exposure.objects.bulk_update(
                changed, ["installed_version", "fixed_version", "severity"], batch_size=500
            )
        new = [
            Exposure(
                version_id=version_id,
                advisory_id=m.advisory_id,
                package=m.package,
                installed_version=m.installed_version,
                fixed_version=m.fixed_version,
                severity=m.severity,
                first_seen=now,
            )
            for key, m in wanted.items()
            if key not in existing
        ]
        Exposure.objects.bulk_create(new, batch_size=500)
    return len(new), len(gone)


def match_all(versions: Iterable[ImageVersion] | None = None) -> int:
    """Recompute the exposures of every version (or of `versions`); returns how many
    versions were matched."""
    images = {
        image.pk: image
        for image in Image.objects.select_related("upstream", "base_image__upstream")
    }
    ecosystems = {eco for image in images.values() for eco in ecosystems_for(image)}
    index = load_advisories(ecosystems)
    if versions is None:
        rows: Iterable[tuple[int, int, Any]] = ImageVersion.objects.values_list(
            "id", "image_id", "manifest"
        ).iterator(chunk_size=100)
    else:
        rows = [(v.pk, v.image_id, v.manifest) for v in versions]
    count = 0
    now = timezone.now()
    cache: dict[tuple[int, str], tuple[bool, str]] = {}
    coverages = []
    for pk, image_id, manifest in rows:
        image = images[image_id]
        manifest = manifest or []
        state = coverage(image, manifest)
        coverages.append(
            VersionCoverage(version_id=pk, status=state.status, reason=state.reason, matched_at=now)
        )
        if state.status != COVERED:
            # Unknown or not covered: nothing stored says "no exposure".
            Exposure.objects.filter(version_id=pk).delete()
            continue
        sync_exposures(pk, match_manifest(image, manifest, index, cache))
        count += 1
    VersionCoverage.objects.bulk_create(
        coverages,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["version"],
        update_fields=["status", "reason", "matched_at"],
    )
    return count
