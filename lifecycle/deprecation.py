"""Deprecation: when an image leaves the catalogue, what replaces it, and the daily moves
active -> deprecation scheduled -> deprecated -> retired.

Policy: the deprecation date is the upstream date the image follows (end of standard
security support, or extended support where chosen) plus a grace period (the global
`DEPRECATION_GRACE_DAYS` or the image's own). Rolling releases and images without an upstream
end of life are never deprecated automatically. An InstantApp follows its base image's date
unless it has its own grace period or a manager set its date.

The policy applies once, when it first finds a date for an active image: from then on the
date moves only by a manager, with a reason (audited). A date already past, or too close to
warn customers, becomes today + the shortest notice offset, so customers are always told
before. State changes are guarded updates (`filter(pk=..., state=...).update(...)`), so two
runs of the daily task never apply one twice.

Retirement removes what the image left behind: its QCOW2 artefacts, its versions from the
Marketplace, and its instance images with their snapshots in every zone, for both storage
types (an image on local storage over an Instance snapshot, an image on Block Storage over a
Block snapshot, deleted through the Block API). A zone that cannot
be cleaned keeps its LocalImages marked "deletion failed", with the reason, and every daily
run tries them again until they are gone.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from catalog import audit, dates
from catalog.choices import (
    DeprecationBasis,
    ImageKind,
    ImageState,
    LocalImageState,
    StorageType,
    VersionState,
)
from catalog.models import Image, ImageVersion, LocalImage
from cloud import clients
from cloud.deletion import ImageRemoval
from cloud.retries import CloudError
from lifecycle import versions
from lifecycle.image_errors import DailyRun

log = logging.getLogger(__name__)

_STATE_FIELDS = ("state", "deprecation_date", "deprecation_reason", "replacement")
# Still offered to customers, so a possible replacement (a scheduled image stays launchable
# until its date; the policy schedules most images years ahead).
OFFERED = (ImageState.ACTIVE, ImageState.DEPRECATION_SCHEDULED)


def notice_lead_days() -> int:
    """The shortest *positive* notice offset: the least warning customers ever get (7)."""
    offsets = settings.NOTICE_OFFSETS_DAYS
    positive = [int(days) for days in offsets if int(days) > 0]
    return min(positive) if positive else 0


def retention_days() -> int:
    """How long a deprecated image's artefacts are kept before it is retired (180)."""
    return settings.RETENTION_DAYS


def _basis_label(image: Image) -> str:
    lifecycle = image.upstream
    if lifecycle.deprecation_basis == DeprecationBasis.EXTENDED and lifecycle.extended_support_end:
        return "end of extended support"
    return "end of standard security support"


@dataclass
class Plan:
    """An image's deprecation date and how it was arrived at, for the panel and the policy."""

    date: dt.date | None
    explanation: str
    source: str  # manager | policy | base | none
    replacement: Image | None = None
    bumped_from: dt.date | None = None
    notes: list[str] = field(default_factory=list)


_OUT_OF_RANGE = (
    f"outside the accepted range ({dates.EARLIEST:%Y-%m-%d} to {dates.LATEST:%Y-%m-%d}), so "
    "no automatic deprecation; a release manager can set the date."
)


def _followed_plus_grace(followed: dt.date, grace: int, why: str) -> tuple[dt.date | None, str]:
    """`followed` + `grace` days and why; None when either date is out of the accepted range
    (a far-future EOL such as 9999-12-31 would otherwise overflow, or schedule nonsense)."""
    date = dates.add_days(followed, grace)
    if dates.in_range(followed) and dates.in_range(date):
        return date, why
    return None, f"{why.rstrip('.')}: {_OUT_OF_RANGE}"


def policy_date(image: Image) -> tuple[dt.date | None, str]:
    """The date the policy gives (before any bump), and why; None for no automatic date."""
    if image.is_os:
        lifecycle = getattr(image, "upstream", None)
        if lifecycle is None:
            return None, "No upstream lifecycle recorded: never deprecated automatically."
        if lifecycle.rolling:
            return None, "Rolling release: no upstream end of life, never deprecated automatically."
        followed = lifecycle.followed_date
        if followed is None:
            return None, "No upstream end of life known yet: no automatic deprecation."
        grace = image.effective_grace_days
        own = " (this image's own)" if image.grace_period_days is not None else ""
        return _followed_plus_grace(
            followed,
            grace,
            f"Upstream {_basis_label(image)} {followed:%Y-%m-%d} + {grace} days of grace{own}.",
        )
    base = image.base_image
    if base is None:
        return None, "No base image."
    if image.grace_period_days is not None:
        # The app's own grace period overrides following the base's date.
        lifecycle = getattr(base, "upstream", None)
        followed = lifecycle.followed_date if lifecycle else None
        if followed is None:
            return None, f"Base image {base.label} has no upstream end of life."
        return _followed_plus_grace(
            followed,
            image.grace_period_days,
            f"Base image {base.label}: upstream {_basis_label(base)} {followed:%Y-%m-%d} "
            f"+ {image.grace_period_days} days of grace (this InstantApp's own).",
        )
    if base.deprecation_date:
        if not dates.in_range(base.deprecation_date):
            return None, (
                f"Base image {base.label} has the deprecation date "
                f"{base.deprecation_date:%Y-%m-%d}: {_OUT_OF_RANGE}"
            )
        return base.deprecation_date, f"Follows its base image {base.label}."
    date, why = policy_date(base)
    if date is None:
        return None, f"Follows its base image {base.label}: {why}"
    return date, f"Follows its base image {base.label}: {why}"


def bumped(date: dt.date, today: dt.date) -> dt.date:
    """`date`, or today + the shortest notice offset when that is later."""
    return max(date, dates.add_days(today, notice_lead_days()))


def plan_for(image: Image, today: dt.date | None = None, *, replacement: bool = True) -> Plan:
    """What the deprecation panel shows: the recorded date, or what the policy would set.

    `replacement=False` leaves the default replacement unlooked-for (a query per image), for
    pages that show only the dates, such as the catalogue's timeline."""
    today = today or timezone.localdate()
    if image.deprecation_date:
        return Plan(
            image.deprecation_date,
            image.deprecation_reason or "Set on the image.",
            "manager" if image.deprecation_reason.startswith("Set by") else "policy",
            image.replacement,
        )
    date, why = policy_date(image)
    if replacement:
        chosen = image.replacement or default_replacement(image)
    else:
        chosen = image.replacement if image.replacement_id is not None else None
    if date is None:
        return Plan(None, why, "none", chosen)
    source = "policy" if image.is_os or image.grace_period_days is not None else "base"
    plan = Plan(date, why, source, chosen)
    if image.state == ImageState.ACTIVE and bumped(date, today) != date:
        plan.bumped_from, plan.date = date, bumped(date, today)
        plan.notes.append(_bump_note(date, plan.date))
    return plan


def retirement_date(image: Image, deprecation_date: dt.date | None) -> dt.date | None:
    """When the image is (or will be) retired: the retention period after it was deprecated,
    or after its planned deprecation date; None without either."""
    if image.deprecated_at is not None:
        start = timezone.localdate(image.deprecated_at)
    elif deprecation_date is not None:
        start = deprecation_date
    else:
        return None
    end = dates.add_days(start, retention_days())
    return end if dates.in_range(end) else None


def _bump_note(original: dt.date, new: dt.date) -> str:
    return (
        f"The policy date {original:%Y-%m-%d} leaves customers less than "
        f"{notice_lead_days()} days' notice: moved to {new:%Y-%m-%d}."
    )


# --- replacements ----------------------------------------------------------------------------


def _newer(candidate: Image, image: Image) -> bool:
    """True when `candidate` is a later release of the same distribution than `image`."""
    mine = getattr(getattr(image, "upstream", None), "release_date", None)
    theirs = getattr(getattr(candidate, "upstream", None), "release_date", None)
    if mine and theirs:
        return theirs > mine
    if image.version and candidate.version:
        return versions.compare_dpkg(candidate.version, image.version) > 0
    return False


def _newest_first(images: list[Image]) -> list[Image]:
    def key(image: Image) -> tuple:
        released = getattr(getattr(image, "upstream", None), "release_date", None)
        return (released or dt.date.min, versions.sort_key("dpkg")(image.version or "0"))

    return sorted(images, key=key, reverse=True)


def _newer_candidates(image: Image) -> QuerySet[Image]:
    """The offered OS images of the same distribution that may be newer (see _newer)."""
    candidates = (
        Image.objects.os_images()
        .filter(state__in=OFFERED, distribution__iexact=image.distribution)
        .exclude(pk=image.pk)
        .select_related("upstream")
    )
    mine = getattr(getattr(image, "upstream", None), "release_date", None)
    if mine is not None:
        # What _newer keeps, narrowed by the database: a later release date, or none (then
        # the versions are compared). The others are every older release of the distribution.
        candidates = candidates.filter(
            Q(upstream__release_date__gt=mine) | Q(upstream__release_date__isnull=True)
        )
    return candidates


def _newer_os_images(image: Image) -> list[Image]:
    if not image.distribution:
        return []
    return _newest_first([c for c in _newer_candidates(image) if _newer(c, image)])


def _newest_os_image(image: Image) -> Image | None:
    """_newer_os_images(image)[0] without loading every newer release: when the image has a
    release date, every candidate with a date is newer and ranks above those without one, so
    the newest is among those of the latest date."""
    if not image.distribution:
        return None
    if getattr(getattr(image, "upstream", None), "release_date", None) is None:
        newer = _newer_os_images(image)
        return newer[0] if newer else None
    candidates = _newer_candidates(image)
    latest = list(
        candidates.filter(upstream__release_date__isnull=False)
        .order_by("-upstream__release_date")
        .values_list("upstream__release_date", flat=True)[:1]
    )
    if latest:
        pool = list(candidates.filter(upstream__release_date=latest[0]))
    else:
        pool = [c for c in candidates if _newer(c, image)]
    return _newest_first(pool)[0] if pool else None


def _app_key(app: Image) -> str:
    """An InstantApp's identity without its base: wordpress_noble and wordpress -> wordpress."""
    label = app.label
    base = app.base_image
    if base is not None:
        # ubuntu_noble -> "ubuntu_noble", "noble", "24.04", "2404", and the codename.
        suffixes = {base.label, base.label.partition("_")[2], base.version.lower()}
        suffixes.add(base.codename.split(" ")[0].lower())
        suffixes |= {s.replace(".", "") for s in suffixes}
        for suffix in sorted((s for s in suffixes if s), key=len, reverse=True):
            label = re.sub(rf"_{re.escape(suffix)}$", "", label)
    return label


def default_replacement(image: Image) -> Image | None:
    """The newest offered OS image of the same distribution; for an InstantApp, the same app
    on a newer base image when such an InstantApp exists."""
    if image.is_os:
        return _newest_os_image(image)
    base = image.base_image
    if base is None:
        return None
    newer_bases = {b.pk: rank for rank, b in enumerate(_newer_os_images(base))}
    apps = (
        Image.objects.instantapps()
        .filter(state__in=OFFERED, base_image__in=list(newer_bases))
        .exclude(pk=image.pk)
        .select_related("base_image")
    )
    same = [
        app
        for app in apps
        if _app_key(app) == _app_key(image) or app.name.lower() == image.name.lower()
    ]

    def rank(app: Image) -> int:
        assert app.base_image_id is not None, "the query keeps apps on a newer base"
        return newer_bases[app.base_image_id]

    same.sort(key=rank)
    return same[0] if same else None


# --- the policy and the manager's override -----------------------------------------------


def schedule_by_policy(image: Image, today: dt.date | None = None) -> bool:
    """Give an active image its deprecation date (bumped for notice) and the scheduled
    state; True when this call did. An active image that already has a date (set by hand)
    only changes state."""
    today = today or timezone.localdate()
    if image.state != ImageState.ACTIVE:
        return False
    before = audit.snapshot(image, _STATE_FIELDS)
    if image.deprecation_date:
        date, reason, replacement = image.deprecation_date, image.deprecation_reason, None
    else:
        plan = plan_for(image, today)
        if plan.date is None:
            return False
        date = plan.date
        reason = " ".join([plan.explanation, *plan.notes])
        replacement = plan.replacement
    updates = {"state": ImageState.DEPRECATION_SCHEDULED, "deprecation_date": date}
    if not image.deprecation_date:
        updates["deprecation_reason"] = reason
    if image.replacement_id is None and replacement is not None:
        updates["replacement"] = replacement
    with transaction.atomic():
        changed = Image.objects.filter(pk=image.pk, state=ImageState.ACTIVE).update(
            **updates, updated_at=timezone.now()
        )
        if changed != 1:
            return False
        image.refresh_from_db()
        audit.record(
            "deprecation.scheduled",
            image=image,
            target=image,
            before=before,
            after=audit.snapshot(image, _STATE_FIELDS),
            message=reason,
        )
    log.info("%s: deprecation scheduled for %s", image.label, date)
    return True


def following_apps(image: Image, date: dt.date | None) -> QuerySet[Image]:
    """InstantApps on `image` that follow its deprecation: no date of their own, or the one
    `image` had (`date`), and no grace period of their own."""
    apps = Image.objects.instantapps().filter(
        base_image=image,
        state__in=[ImageState.ACTIVE, ImageState.DEPRECATION_SCHEDULED],
        grace_period_days__isnull=True,
    )
    if date is None:
        return apps.filter(deprecation_date__isnull=True)
    return apps.filter(deprecation_date=date) | apps.filter(deprecation_date__isnull=True)


def set_deprecation_date(
    image: Image,
    date: dt.date,
    *,
    reason: str,
    user: User | AnonymousUser | None,
    replacement: Image | None = None,
    today: dt.date | None = None,
) -> Image:
    """A manager sets or moves an image's deprecation date, with a reason (audited).

    InstantApps that follow the image move with it. A deprecated or retired image keeps its
    date: customers were told and the Marketplace already hides it.
    """
    today = today or timezone.localdate()
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the date is set or moved."})
    if date < today:
        raise ValidationError({"date": "Choose today or a later date."})
    if not dates.in_range(date):
        raise ValidationError({"date": dates.range_message(date)})
    if replacement is not None and replacement.pk == image.pk:
        raise ValidationError({"replacement": "An image cannot replace itself."})
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        if locked.state not in (ImageState.ACTIVE, ImageState.DEPRECATION_SCHEDULED):
            raise ValidationError(
                f"{locked.label} is already {locked.get_state_display().lower()}."
            )
        before = audit.snapshot(locked, _STATE_FIELDS)
        old_date = locked.deprecation_date
        who = user.get_username() if user is not None and user.is_authenticated else "system"
        locked.deprecation_date = date
        locked.deprecation_reason = f"Set by {who} on {today:%Y-%m-%d}: {reason}"
        locked.state = ImageState.DEPRECATION_SCHEDULED
        if replacement is not None:
            locked.replacement = replacement
        elif locked.replacement_id is None:
            locked.replacement = default_replacement(locked)
        locked.save()
        audit.record(
            "deprecation.date_set",
            actor=user,
            image=locked,
            target=locked,
            before=before,
            after=audit.snapshot(locked, _STATE_FIELDS),
            message=reason,
        )
        if locked.is_os:
            for app in following_apps(locked, old_date).exclude(deprecation_date=date):
                _follow_base(app, locked, user=user)
    return locked


def _follow_base(app: Image, base: Image, *, user: User | AnonymousUser | None) -> None:
    before = audit.snapshot(app, _STATE_FIELDS)
    app.deprecation_date = base.deprecation_date
    app.deprecation_reason = f"Follows its base image {base.label}."
    app.state = ImageState.DEPRECATION_SCHEDULED
    if app.replacement_id is None:
        app.replacement = default_replacement(app)
    app.save()
    audit.record(
        "deprecation.date_set",
        actor=user,
        image=app,
        target=app,
        before=before,
        after=audit.snapshot(app, _STATE_FIELDS),
        message=f"Follows its base image {base.label}.",
    )


# --- the daily transitions -------------------------------------------------------------------


def _tell_marketplace(image: Image, what: str, action: Callable[[Any], None]) -> str:
    """Run `action(publisher)`; "" when the Marketplace (localcloud or the tag feed) was
    told, else why not.

    The state change stands even when this fails: the failure is logged and audited, so a
    release manager can act; the cloud adapter may not be installed in every deployment.
    """
    try:
        from cloud.publisher import get_publisher
    except ImportError:
        log.warning("cloud.publisher is not available: %s stays in the Marketplace", image.label)
        return "cloud.publisher is not available"
    try:
        action(get_publisher())
    except Exception as exc:  # any cloud or configuration error: record it, do not undo
        log.exception("could not %s %s", what, image.label)
        audit.record(
            "deprecation.marketplace_failed",
            image=image,
            target=image,
            message=f"The Marketplace was not told: {exc}",
        )
        return str(exc) or type(exc).__name__
    return ""


def _publisher_set_valid_until(image: Image, when: dt.datetime | None) -> bool:
    """Tell the Marketplace the image is deprecated from `when`; True when it was told."""
    return not _tell_marketplace(
        image, "set valid_until of", lambda port: port.set_valid_until(image, when)
    )


def deprecate(image: Image, now: dt.datetime | None = None) -> bool:
    """Scheduled -> deprecated on its date; the Marketplace hides it and refuses new servers."""
    now = now or timezone.now()
    before = audit.snapshot(image, ("state", "deprecated_at"))
    with transaction.atomic():
        changed = Image.objects.filter(
            pk=image.pk,
            state=ImageState.DEPRECATION_SCHEDULED,
            deprecation_date__lte=timezone.localdate(now),
        ).update(state=ImageState.DEPRECATED, deprecated_at=now, updated_at=now)
        if changed != 1:
            return False
        image.refresh_from_db()
        audit.record(
            "deprecation.deprecated",
            image=image,
            target=image,
            before=before,
            after=audit.snapshot(image, ("state", "deprecated_at")),
            message=f"Deprecation date {image.deprecation_date:%Y-%m-%d} reached.",
        )
    _publisher_set_valid_until(image, now)
    log.info("%s deprecated", image.label)
    return True


def retire(image: Image, now: dt.datetime | None = None) -> bool:
    """Deprecated -> retired after the retention period: the Marketplace stops offering its
    versions, its instance images and their snapshots are deleted in every zone, its
    artefacts are removed and its versions retired.

    The cloud goes first, outside any transaction (network calls must not hold the
    database), so that the one audit entry says what was removed; deleting is idempotent, so
    a run that stopped half-way, or two runs at once, only find things already gone. A zone
    that fails does not hold the retirement back: its LocalImages are marked "deletion
    failed" with the reason, and `run_transitions` retries them every day.
    """
    now = now or timezone.now()
    limit = now - dt.timedelta(days=retention_days())
    due = Image.objects.filter(pk=image.pk, state=ImageState.DEPRECATED, deprecated_at__lte=limit)
    if not due.exists():
        return False
    image.refresh_from_db()
    before = audit.snapshot(image, ("state", "retired_at"))
    deprecated_at = image.deprecated_at or now
    marketplace = _tell_marketplace(
        image, "retire in the Marketplace", lambda port: port.retire(image, deprecated_at)
    )
    cloud = remove_from_cloud(image)
    with transaction.atomic():
        changed = due.update(state=ImageState.RETIRED, retired_at=now, updated_at=now)
        if changed != 1:
            return False
        image.refresh_from_db()
        removed = _remove_artefacts(image)
        audit.record(
            "deprecation.retired",
            image=image,
            target=image,
            before=before,
            after={
                **audit.snapshot(image, ("state", "retired_at")),
                "artefacts": removed,
                **cloud.as_audit(),
                "marketplace": f"not told: {marketplace}" if marketplace else "told",
            },
            message=f"Retained {retention_days()} days after deprecation; "
            f"{len(removed)} artefact(s) removed; {cloud.summary()}",
        )
    log.info("%s retired: %s", image.label, cloud.summary())
    return True


def _remove_artefacts(image: Image) -> list[str]:
    removed = []
    for version in ImageVersion.objects.filter(image=image):
        if version.artefact_path:
            path = Path(version.artefact_path)
            if not path.is_absolute():
                path = Path(settings.ARTEFACT_DIR) / path
            path.unlink(missing_ok=True)
            removed.append(version.artefact_path)
    ImageVersion.objects.filter(image=image).update(artefact_path="", state=VersionState.RETIRED)
    return removed


# --- retirement: the cloud side --------------------------------------------------------------


@dataclass
class CloudRemoval:
    """What one pass over a retired image's cloud resources did, for the audit and the log."""

    removed: list[str] = field(default_factory=list)  # "fr-par-1 image <id>", "... snapshot"
    already_gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "fr-par-1 <version> (<arch>): <reason>"
    zones_done: set[str] = field(default_factory=set)
    zones_failed: set[str] = field(default_factory=set)

    @property
    def attempted(self) -> bool:
        return bool(self.zones_done or self.zones_failed)

    def as_audit(self) -> dict[str, list[str]]:
        return {
            "cloud_removed": self.removed,
            "cloud_already_gone": self.already_gone,
            "cloud_failed": self.failed,
        }

    def summary(self) -> str:
        if not self.attempted:
            return "no cloud image to remove."
        images = sum(1 for r in self.removed if " image " in r)
        snapshots = sum(1 for r in self.removed if " snapshot " in r)
        text = (
            f"cloud: {images} image(s) and {snapshots} snapshot(s) removed"
            f"{f', {len(self.already_gone)} already gone' if self.already_gone else ''}"
        )
        if self.zones_done:
            text += f"; done in {', '.join(sorted(self.zones_done))}"
        if self.failed:
            text += (
                f"; left for the next daily run in {', '.join(sorted(self.zones_failed))}: "
                + "; ".join(self.failed)
            )
        return text + "."


def _pending_local_images(image: Image) -> QuerySet[LocalImage]:
    """The image's LocalImages whose cloud resources may still exist."""
    return (
        LocalImage.objects.filter(version__image=image)
        .exclude(state=LocalImageState.DELETED)
        .select_related("zone", "version")
        .order_by("zone__code", "version__name", "version__arch", "pk")
    )


def _mark(local: LocalImage, state: str, error: str = "") -> None:
    # Guarded: a concurrent run that already deleted it is never undone.
    LocalImage.objects.filter(pk=local.pk).exclude(state=LocalImageState.DELETED).update(
        state=state, error=error[:2000], updated_at=timezone.now()
    )


def _zone_unavailable(exc: CloudError) -> bool:
    """True when the zone's API itself failed (no answer, 5xx), not this one resource: the
    zone's other resources are then left for the next run instead of failing one by one."""
    return exc.status is None or exc.status >= 500


def remove_from_cloud(image: Image) -> CloudRemoval:
    """Delete the instance image and its snapshots of every LocalImage of `image` not yet
    deleted (either storage type: Block snapshots through the Block API), zone by zone; mark
    each LocalImage deleted, or "deletion failed" with the reason. A resource already gone
    counts as deleted."""
    result = CloudRemoval()
    pending = list(_pending_local_images(image))
    if not pending:
        return result
    api: Any = None
    block: Any = None
    unconfigured = ""
    try:
        api = clients.instance_api()
        block = clients.block_api()
    except CloudError as exc:
        unconfigured = str(exc)
    down: dict[str, str] = {}  # zone -> why its API failed in this run
    for local in pending:
        zone = local.zone.code
        on_block = local.storage_type == StorageType.SBS
        where = f"{zone} {local.version.name} ({local.version.arch}"
        where += ", Block Storage)" if on_block else ")"
        if on_block:  # its recorded snapshot is a Block snapshot
            removal = ImageRemoval(
                zone, local.provider_image_id, block_snapshot_ids=[local.snapshot_id]
            )
        else:
            removal = ImageRemoval(zone, local.provider_image_id, [local.snapshot_id])
        if unconfigured:
            reason = unconfigured
        elif zone in down:
            reason = f"not tried, {zone} failed earlier in this run: {down[zone]}"
        else:
            reason = ""
            try:
                removal.run(api, block=block)
            except CloudError as exc:
                reason = str(exc)
                if _zone_unavailable(exc):
                    down[zone] = reason
        result.removed += [f"{zone} {item}" for item in removal.deleted]
        result.already_gone += [f"{zone} {item}" for item in removal.already_gone]
        if reason:
            log.warning("%s: cloud resources left in %s: %s", image.label, where, reason)
            _mark(local, LocalImageState.DELETE_FAILED, reason)
            result.failed.append(f"{where}: {reason}")
            result.zones_failed.add(zone)
        else:
            _mark(local, LocalImageState.DELETED)
            result.zones_done.add(zone)
    result.zones_done -= result.zones_failed
    return result


def retry_cloud_removal(image: Image) -> CloudRemoval | None:
    """Try again what retiring `image` left in the cloud; None when nothing was left."""
    if image.state != ImageState.RETIRED:
        return None
    result = remove_from_cloud(image)
    if not result.attempted:
        return None
    audit.record(
        "deprecation.cloud_removal_retried",
        image=image,
        target=image,
        after=result.as_audit(),
        message=f"Cloud removal retried after the retirement: {result.summary()}",
    )
    log.info("%s: cloud removal retried: %s", image.label, result.summary())
    return result


@dataclass
class CloudStatus:
    """A retired image's LocalImages: those removed from the cloud and those left, with the
    reason (for the deprecation panel)."""

    removed: list[LocalImage]
    leftovers: list[LocalImage]

    @property
    def removed_zones(self) -> list[str]:
        return sorted({local.zone.code for local in self.removed})

    @property
    def leftover_zones(self) -> list[str]:
        return sorted({local.zone.code for local in self.leftovers})


def cloud_status(image: Image) -> CloudStatus | None:
    """What retirement removed from the cloud; None for an image not retired."""
    if image.state != ImageState.RETIRED:
        return None
    locals_ = list(
        LocalImage.objects.filter(version__image=image)
        .select_related("zone", "version__image")
        .order_by("zone__code", "version__name", "version__arch", "pk")
    )
    return CloudStatus(
        removed=[local for local in locals_ if local.state == LocalImageState.DELETED],
        leftovers=[local for local in locals_ if local.state != LocalImageState.DELETED],
    )


@dataclass
class TransitionSummary:
    """What one daily run did, by label."""

    scheduled: list[str] = field(default_factory=list)
    deprecated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    # Retired images whose cloud leftovers were tried again, and those still left after that.
    cloud_retried: list[str] = field(default_factory=list)
    cloud_left: list[str] = field(default_factory=list)
    # Images a step failed on (the error is on the image); the others went on.
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"deprecation: {len(self.scheduled)} scheduled, {len(self.deprecated)} deprecated, "
            f"{len(self.retired)} retired, {len(self.cloud_retried)} cloud removal(s) retried "
            f"({len(self.cloud_left)} still with leftovers)"
        )
        if self.failed:
            text += f"; failed on {', '.join(self.failed)}"
        return text


TRANSITIONS_JOB = "Daily deprecation run"


def run_transitions(now: dt.datetime | None = None) -> TransitionSummary:
    """The daily deprecation task: schedule by policy, then deprecate and retire what is due,
    then retry the cloud removal of images retired earlier that left something behind.

    OS images are scheduled before InstantApps, so that an app follows the date its base
    image received in the same run. Each image is handled on its own (`image_errors`): an
    error is recorded on that image, and the run goes on with the others.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    summary = TransitionSummary()
    run = DailyRun(TRANSITIONS_JOB)
    active = Image.objects.filter(state=ImageState.ACTIVE).select_related(
        "upstream", "base_image__upstream"
    )
    for kind in (ImageKind.OS, ImageKind.INSTANTAPP):
        for image in active.filter(kind=kind).order_by("label"):
            with run.each(image, "scheduling by policy"):
                if image.base_image is not None:  # selected with the image: no query
                    image.base_image.refresh_from_db()
                if schedule_by_policy(image, today):
                    summary.scheduled.append(image.label)
    due = Image.objects.filter(
        state=ImageState.DEPRECATION_SCHEDULED, deprecation_date__lte=today
    ).order_by("label")
    for image in due:
        with run.each(image, "deprecation"):
            if deprecate(image, now):
                summary.deprecated.append(image.label)
    limit = now - dt.timedelta(days=retention_days())
    retiring = Image.objects.filter(state=ImageState.DEPRECATED, deprecated_at__lte=limit)
    for image in retiring.order_by("label"):
        with run.each(image, "retirement"):
            if retire(image, now):
                summary.retired.append(image.label)
    left = (
        LocalImage.objects.filter(version__image__state=ImageState.RETIRED)
        .exclude(state=LocalImageState.DELETED)
        .values("version__image")
    )
    retried = Image.objects.filter(pk__in=left).exclude(label__in=summary.retired)
    for image in retried.order_by("label"):
        with run.each(image, "cloud removal retry"):
            result = retry_cloud_removal(image)
            if result is not None:
                summary.cloud_retried.append(image.label)
                if result.failed:
                    summary.cloud_left.append(image.label)
    run.finish()
    summary.failed = run.failed_labels
    return summary
