"""Adopting the catalogue that exists already: the cloud's Marketplace, as the factory's rows.

A provider's Marketplace holds images built before the factory existed. `adopt()` reads it
(cloud.marketplace, read-only: real Scaleway's public Marketplace or localcloud's) and records,
for each Marketplace image whose label is a catalogue image's label (or that a manager mapped
to an image):

- one ImageVersion per Marketplace version and architecture, `origin=adopted`, released (a
  Marketplace version is launchable), named after the Marketplace version;
- one LocalImage per local image (zone, storage `type`), `origin=adopted`, available, whose
  provider image id is the local image's id (the Instance image customers boot);
- one Release per adopted version (publisher "adopted", the Marketplace version id), so that
  the image's current version is the latest one published, as the Marketplace resolves it.

From then on they are the factory's versions for usage, deprecation, notices, retirement and
the feed. Not being built here, they have no artefact, no manifest and no test run: they are
never tested, released or published again (`lifecycle.releases.readiness`, the test re-run
view); a build makes the next version.

A label with no catalogue image is stored (MarketplaceLabel) for a manager to map to an image
or to ignore; a Marketplace version that is the factory's own release (its id is a release's,
or its local images are known local images) is left alone.

Invariants:
- Idempotent: a second run over the same Marketplace writes nothing, audit included.
- All or nothing: the whole Marketplace is read before the first write, and the writes are
  one transaction; an unreachable cloud raises CloudError and nothing is recorded.
- What cannot be adopted is said, not guessed: a version with no local image, a local image of
  an unknown storage type or zone, a label of a retired image, a name already taken by a
  version built here. Each is a line of the report.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from catalog import audit
from catalog.choices import Arch, ImageState, LocalImageState, Origin, StorageType, VersionState
from catalog.models import Image, ImageVersion, LocalImage, Zone
from cloud import marketplace
from cloud.marketplace import MarketImage, MarketVersion
from lifecycle.models import LabelDecision, MarketplaceLabel, Release

log = logging.getLogger(__name__)

ADOPTED_PUBLISHER = "adopted"
ADOPTION_ACTION = "marketplace.adoption"
VERSION_ACTION = "version.adopted"
LABEL_FOUND_ACTION = "marketplace.label_found"
LABEL_MAPPED_ACTION = "marketplace.label_mapped"
LABEL_IGNORED_ACTION = "marketplace.label_ignored"
READINESS = "Adopted from the Marketplace (not built here)."
_ZONE = re.compile(r"^[a-z]{2}-[a-z]{3}-[0-9]$")
_NAME_INVALID = re.compile(r"[^A-Za-z0-9-]+")


@dataclass
class Report:
    """What a run did and what it could not do, in words."""

    adopted: list[str] = field(default_factory=list)  # "ubuntu_focal 2024-01-05 (x86_64)"
    local_images: int = 0
    labels_found: list[str] = field(default_factory=list)
    zones_added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    images_read: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.adopted or self.local_images or self.labels_found or self.zones_added)

    def summary(self) -> str:
        if not self.changed:
            return f"Read {self.images_read} Marketplace image(s): nothing new to adopt."
        parts = [
            f"adopted {len(self.adopted)} version(s)",
            f"{self.local_images} local image(s)",
        ]
        if self.labels_found:
            parts.append(f"{len(self.labels_found)} label(s) with no image listed")
        if self.zones_added:
            parts.append(f"zone(s) {', '.join(self.zones_added)} added, disabled")
        return f"Read {self.images_read} Marketplace image(s): " + ", ".join(parts) + "."


def version_name(name: str, published: dt.datetime | None) -> str:
    """The Marketplace version's name as a version name (letters, digits and dashes)."""
    cleaned = _NAME_INVALID.sub("-", name).strip("-")[:64].strip("-")
    if cleaned:
        return cleaned
    return (published or timezone.now()).date().isoformat()


def _when(version: MarketVersion) -> dt.datetime:
    return version.published_at or version.created_at or timezone.now()


class _Run:
    """One adoption over catalogue rows read once, then written in one transaction."""

    def __init__(self, user: Any, report: Report) -> None:
        self.user = user
        self.report = report
        self.zones = {z.code: z for z in Zone.objects.all()}
        self.known_ids = set(
            LocalImage.objects.exclude(provider_image_id="").values_list(
                "provider_image_id", flat=True
            )
        )
        # (Marketplace version id, arch) -> the version recorded for it.
        self.by_market: dict[tuple[str, str], ImageVersion] = {}
        for release in Release.objects.exclude(marketplace_version_id="").select_related("version"):
            key = (release.marketplace_version_id, release.version.arch)
            self.by_market.setdefault(key, release.version)

    def zone(self, code: str, where: str) -> Zone | None:
        if code in self.zones:
            return self.zones[code]
        if not _ZONE.match(code):
            self.report.problems.append(f"{where}: zone {code!r} is not a zone code; skipped.")
            return None
        zone = Zone.objects.create(code=code, enabled=False)
        self.zones[code] = zone
        self.report.zones_added.append(code)
        return zone

    def image_for(self, market: MarketImage) -> Image | None:
        image = Image.objects.filter(label=market.label).first()
        if image is not None:
            # An image of that label was added since the label was listed: nothing to decide.
            MarketplaceLabel.objects.filter(
                label=market.label, decision=LabelDecision.PENDING
            ).delete()
        else:
            listed = MarketplaceLabel.objects.filter(label=market.label).first()
            if listed is None or listed.decision == LabelDecision.PENDING:
                self.list_label(market, listed)
                return None
            if listed.decision == LabelDecision.IGNORED:
                return None
            image = listed.image
            if image is None:  # the image it was mapped to was deleted
                self.report.problems.append(
                    f"{market.label}: mapped to an image that no longer exists; map it again."
                )
                return None
        if image.state == ImageState.RETIRED:
            if not market.versions:
                return None  # what retirement leaves in the Marketplace: nothing to say
            when = f" on {image.retired_at:%Y-%m-%d}" if image.retired_at else ""
            self.report.problems.append(
                f"{market.label}: the catalogue image {image.label} was retired{when}; its "
                f"{len(market.versions)} Marketplace version(s) are not adopted."
            )
            return None
        return image

    def list_label(self, market: MarketImage, listed: MarketplaceLabel | None) -> None:
        values = {
            "marketplace_image_id": market.id,
            "name": market.name[:255],
            "version_count": len(market.versions),
            "valid_until": market.valid_until,
        }
        if listed is None:
            listed = MarketplaceLabel.objects.create(label=market.label, **values)
            self.report.labels_found.append(market.label)
            audit.record(
                LABEL_FOUND_ACTION,
                actor=self.user,
                target=listed,
                after=audit.snapshot(listed, ["label", "marketplace_image_id", "version_count"]),
                message=f"Marketplace label {market.label} has no catalogue image: listed for "
                "a manager to map or ignore.",
            )
            return
        changed = {k: v for k, v in values.items() if getattr(listed, k) != v}
        if changed:
            # What the Marketplace says of it now; not a change of the catalogue.
            MarketplaceLabel.objects.filter(pk=listed.pk).update(**changed)

    def adopt_image(self, image: Image, market: MarketImage) -> None:
        for version in market.versions:
            where = f"{market.label} {version.name or version.id}"
            if not version.local_images:
                self.report.problems.append(f"{where}: no local image; nothing to adopt.")
                continue
            by_arch: dict[str, list[Any]] = defaultdict(list)
            for local in version.local_images:
                by_arch[local.arch or "x86_64"].append(local)
            for arch, locals_ in sorted(by_arch.items()):
                self.adopt_version(image, market, version, arch, locals_)

    def adopt_version(
        self,
        image: Image,
        market: MarketImage,
        version: MarketVersion,
        arch: str,
        locals_: list[Any],
    ) -> None:
        where = f"{market.label} {version.name or version.id} ({arch})"
        recorded = self.by_market.get((version.id, arch))
        if recorded is not None and not recorded.is_adopted:
            return  # the factory's own release
        if recorded is None and any(local.id in self.known_ids for local in locals_):
            return  # published by the factory (or adopted under another version)
        if arch not in Arch.values:
            self.report.problems.append(f"{where}: unknown architecture {arch!r}; skipped.")
            return
        wanted: list[tuple[Zone, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for local in sorted(locals_, key=lambda li: (li.zone, li.type, li.id)):
            if local.type not in StorageType.values:
                self.report.problems.append(
                    f"{where} in {local.zone}: unknown storage type {local.type!r} (one of "
                    f"{', '.join(StorageType.values)}); local image {local.id} skipped."
                )
                continue
            if (local.zone, local.type) in seen:
                self.report.problems.append(
                    f"{where} in {local.zone}: a second {local.type} local image "
                    f"({local.id}); only the first is adopted."
                )
                continue
            zone = self.zone(local.zone, where)
            if zone is None:
                continue
            seen.add((local.zone, local.type))
            wanted.append((zone, local.type, local.id))
        if recorded is None:
            if not wanted:
                self.report.problems.append(f"{where}: no local image to adopt; skipped.")
                return
            recorded = self.create_version(image, market, version, arch, where)
            if recorded is None:
                return
        have = {
            (li.zone_id, li.storage_type)
            for li in LocalImage.objects.filter(version=recorded).only("zone", "storage_type")
        }
        added = []
        for zone, storage_type, local_id in wanted:
            if (zone.pk, storage_type) in have or local_id in self.known_ids:
                continue
            LocalImage.objects.create(
                version=recorded,
                zone=zone,
                storage_type=storage_type,
                provider_image_id=local_id,
                state=LocalImageState.AVAILABLE,
                origin=Origin.ADOPTED,
            )
            self.known_ids.add(local_id)
            added.append(f"{zone.code} {storage_type} {local_id}")
        self.report.local_images += len(added)
        if added:
            audit.record(
                VERSION_ACTION,
                actor=self.user,
                image=image,
                target=recorded,
                after={
                    "marketplace_version_id": version.id,
                    "local_images": added,
                    "valid_until": market.valid_until,
                },
                message=f"Adopted from the Marketplace (not built here): {len(added)} local "
                "image(s).",
            )

    def create_version(
        self, image: Image, market: MarketImage, version: MarketVersion, arch: str, where: str
    ) -> ImageVersion | None:
        name = version_name(version.name, version.published_at)
        if ImageVersion.objects.filter(image=image, arch=arch, name=name).exists():
            self.report.problems.append(
                f"{where}: {image.label} already has a version named {name} that is not this "
                "Marketplace version; skipped."
            )
            return None
        when = _when(version)
        row = ImageVersion(
            image=image,
            arch=arch,
            name=name,
            state=VersionState.RELEASED,
            created_at=version.created_at or when,
            released_at=when,
            origin=Origin.ADOPTED,
        )
        try:
            row.full_clean(exclude=["image", "base_version"])
        except ValidationError as exc:
            self.report.problems.append(f"{where}: {'; '.join(exc.messages)}; skipped.")
            return None
        row.save()
        Release.objects.create(
            version=row,
            released_at=when,
            readiness=READINESS,
            publisher=ADOPTED_PUBLISHER,
            marketplace_version_id=version.id,
        )
        self.by_market[(version.id, arch)] = row
        self.report.adopted.append(str(row))
        return row


def adopt(user: Any = None, *, labels: set[str] | None = None) -> Report:
    """Adopt the Marketplace (of `labels`, when given); see the module docstring.

    Raises cloud.retries.CloudError when the Marketplace cannot be read: nothing is written."""
    catalogue = marketplace.read_catalogue(labels)
    report = Report(images_read=len(catalogue))
    with transaction.atomic():
        run = _Run(user, report)
        for market in catalogue:
            image = run.image_for(market)
            if image is not None:
                run.adopt_image(image, market)
        if report.changed:
            audit.record(
                ADOPTION_ACTION,
                actor=user,
                after={
                    "adopted": report.adopted,
                    "local_images": report.local_images,
                    "labels_found": report.labels_found,
                    "zones_added": report.zones_added,
                },
                message=" ".join([report.summary(), *report.problems])[:5000],
            )
    log.info("%s", report.summary())
    for problem in report.problems:
        log.warning("adoption: %s", problem)
    return report


# --- a manager's decisions on the labels with no image ------------------------------------------


class DecisionError(Exception):
    """A mapping or an ignore was refused; the message says why."""


def map_label(listed: MarketplaceLabel, image: Image, user: Any) -> None:
    """Map a Marketplace label to a catalogue image: the next adoption adopts its versions
    into that image."""
    if image.state == ImageState.RETIRED:
        raise DecisionError(f"{image.label} is retired: map the label to a live image.")
    _decide(
        listed,
        LabelDecision.MAPPED,
        image,
        user,
        LABEL_MAPPED_ACTION,
        f"Marketplace label {listed.label} mapped to {image.label}.",
    )


def ignore_label(listed: MarketplaceLabel, user: Any) -> None:
    """Leave a Marketplace label alone: adoption no longer lists it as waiting."""
    _decide(
        listed,
        LabelDecision.IGNORED,
        None,
        user,
        LABEL_IGNORED_ACTION,
        f"Marketplace label {listed.label} ignored: adoption leaves it alone.",
    )


def _decide(
    listed: MarketplaceLabel,
    decision: str,
    image: Image | None,
    user: Any,
    action: str,
    message: str,
) -> None:
    """Record a manager's decision on a listed label, audited, under the label's row lock."""
    with transaction.atomic():
        locked = MarketplaceLabel.objects.select_for_update().get(pk=listed.pk)
        before = audit.snapshot(locked, ["decision", "image"])
        locked.decision, locked.image = decision, image
        locked.decided_by = user if getattr(user, "is_authenticated", False) else None
        locked.decided_at = timezone.now()
        locked.save(update_fields=["decision", "image", "decided_by", "decided_at"])
        audit.record(
            action,
            actor=user,
            image=image,
            target=locked,
            before=before,
            after=audit.snapshot(locked, ["decision", "image"]),
            message=message,
        )
    listed.refresh_from_db()
