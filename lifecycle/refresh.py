"""Why images are rebuilt without anyone clicking: the refresh cadence and the triggers.

- cadence: every image gets a new release at least every `REFRESH_DAYS`; a daily task queues
  a rebuild for images that would become stale within `REFRESH_MARGIN_DAYS`;
- upstream release: a daily check of each OS image channel's current serial, rebuilding
  only when it differs from the latest version's, and recording why it did not otherwise;
- security advisory: images whose latest version holds an affected package older than the
  fixed version, by the distribution's own version ordering;
- ecosystem package update and new product: everything, with the reason;
- base release: an InstantApp is rebuilt when its base OS image gets a new release.

Every rebuild goes through `builds.queue.request_build`, which never duplicates an active
build, with the trigger and a reason people can read on the build page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import Max, Prefetch, QuerySet
from django.utils import timezone

from builds.choices import BuildState, Trigger
from builds.models import Build
from builds.queue import Requested, request_build
from builds.upstream import ResolveError, SourceSpec, resolve
from catalog import audit, staleness
from catalog.choices import ImageKind
from catalog.models import Image, ImageVersion, UpstreamSource
from catalog.staleness import LIVE_STATES, refresh_days
from lifecycle import versions
from lifecycle.image_errors import DailyRun
from lifecycle.models.triggers import CheckOutcome, SecurityAdvisory, UpstreamCheck

log = logging.getLogger(__name__)


def refresh_margin_days() -> int:
    """How early a rebuild is queued before an image would become stale (default 14)."""
    return settings.REFRESH_MARGIN_DAYS


def live_images() -> QuerySet[Image]:
    """Images that are rebuilt: not deprecated, not retired."""
    return Image.objects.filter(state__in=LIVE_STATES).select_related("base_image")


def build_arches(image: Image) -> list[str]:
    """The architectures an image is built for: its sources' (OS) or its own (InstantApp)."""
    if image.is_os:
        return sorted({source.arch for source in image.sources.all()})
    return list(image.architectures)


def _queue_all(
    images: Iterable[Image], *, trigger: str, reason: str, user: User | AnonymousUser | None = None
) -> list[Requested]:
    results = []
    for image in images:
        for arch in build_arches(image):
            results.append(request_build(image, arch, trigger=trigger, reason=reason, user=user))
    return results


# --- cadence ---------------------------------------------------------------------------------


@dataclass
class StaleStatus:
    """How far an image is from needing a refresh."""

    image: Image
    last_release_at: dt.datetime | None
    reference_at: dt.datetime | None  # the last release, or the latest version if never released
    due_on: dt.date | None
    days_left: int | None
    candidate: ImageVersion | None = None  # a version built since the refresh fell due

    @property
    def never_built(self) -> bool:
        return self.reference_at is None

    @property
    def stale(self) -> bool:
        return self.days_left is not None and self.days_left <= 0

    @property
    def awaiting_release(self) -> bool:
        return self.candidate is not None


def refresh_status(today: dt.date | None = None) -> list[StaleStatus]:
    """Each live image's refresh due date, soonest first (never-built images last).

    An image never released is measured from its latest version (the rule is
    catalog.staleness, which the overview's stale badge uses too). A version built after the
    image entered the margin is a refresh waiting for a release manager: it is shown, and
    no second rebuild is queued for it.
    """
    today = today or timezone.localdate()
    margin = refresh_margin_days()
    images = live_images().annotate(
        last_release=Max("versions__released_at"), latest_built=Max("versions__created_at")
    )
    statuses = []
    for image in images:
        released = image.last_release
        built = image.latest_built
        reference = staleness.reference_at(released, built)
        if reference is None:
            statuses.append(StaleStatus(image, None, None, None, None))
            continue
        due = staleness.due_on(reference)
        status = StaleStatus(image, released, reference, due, (due - today).days)
        window_start = due - dt.timedelta(days=margin)
        if (
            released is not None
            and built is not None
            and built > released
            and timezone.localdate(built) >= window_start
        ):
            status.candidate = (
                image.versions.filter(created_at__gt=released).order_by("-created_at").first()
            )
        statuses.append(status)
    far = dt.date.max
    statuses.sort(key=lambda s: (s.due_on or far, s.image.label))
    return statuses


def due_for_refresh(today: dt.date | None = None) -> list[StaleStatus]:
    """Images that are stale or would become stale within the margin, with no candidate yet."""
    margin = refresh_margin_days()
    return [
        s
        for s in refresh_status(today=today)
        if s.days_left is not None and s.days_left <= margin and not s.awaiting_release
    ]


STALE_JOB = "Daily refresh cadence"


def queue_stale_rebuilds(today: dt.date | None = None) -> list[Requested]:
    """The daily cadence task: queue a rebuild of every image due within the margin.

    Each image on its own: an error is recorded on that image and the others are queued.
    """
    results = []
    period = refresh_days()
    run = DailyRun(STALE_JOB)
    for status in due_for_refresh(today):
        with run.each(status.image, "queueing a rebuild"):
            since = (
                f"No release since {status.last_release_at:%Y-%m-%d}"
                if status.last_release_at
                else f"Never released; latest version built {status.reference_at:%Y-%m-%d}"
            )
            reason = f"{since}: a release is due by {status.due_on:%Y-%m-%d} (every {period} days)."
            results += _queue_all([status.image], trigger=Trigger.SCHEDULE, reason=reason)
    run.finish()
    return results


# --- upstream release ------------------------------------------------------------------------


def latest_version(image: Image, arch: str) -> ImageVersion | None:
    """The most recently built version of an image for one architecture."""
    return (
        ImageVersion.objects.filter(image=image, arch=arch).order_by("-created_at", "-id").first()
    )


def check_upstream(
    source: UpstreamSource, *, session: requests.Session | None = None
) -> UpstreamCheck:
    """Resolve one channel's current serial; rebuild only when it differs from the latest
    version's. The returned (saved) row says what was seen and why nothing was done."""
    image = source.image
    check = UpstreamCheck(image=image, arch=source.arch)
    latest = latest_version(image, source.arch)
    check.previous_serial = latest.upstream_serial if latest else ""
    try:
        resolved = resolve(
            SourceSpec.from_model(source),
            allowed_hosts=settings.UPSTREAM_ALLOWED_HOSTS,
            timeout=settings.UPSTREAM_CHECK_TIMEOUT,
            session=session,
        )
    except ResolveError as exc:
        check.outcome = CheckOutcome.ERROR
        check.message = f"Could not resolve {source.channel_url}: {exc}"
        check.save()
        log.warning("upstream check of %s %s: %s", image.label, source.arch, check.message)
        return check
    check.serial_seen = resolved.serial
    if latest is None:
        check.outcome = CheckOutcome.NEVER_BUILT
        check.message = (
            f"Upstream serial {resolved.serial}; no version built yet, so nothing to compare "
            "with: the first build is started by a manager."
        )
    elif resolved.serial == latest.upstream_serial:
        check.outcome = CheckOutcome.UNCHANGED
        check.message = (
            f"Upstream serial {resolved.serial} unchanged since version {latest.name}: no rebuild."
        )
    else:
        failed = (
            Build.objects.filter(
                image=image,
                arch=source.arch,
                state=BuildState.FAILED,
                upstream_serial=resolved.serial,
                created_at__gt=latest.created_at,
            )
            .order_by("-created_at")
            .first()
        )
        if failed is not None:
            # Retrying a failed build every day would only fail again the same way: a
            # manager retries it once the cause is fixed.
            check.outcome = CheckOutcome.FAILED_BEFORE
            check.build = failed
            check.message = (
                f"Upstream serial {resolved.serial} (was {latest.upstream_serial or 'unknown'}),"
                f" but build #{failed.pk} of it failed: not retried automatically."
            )
        else:
            requested = request_build(
                image,
                source.arch,
                trigger=Trigger.UPSTREAM_RELEASE,
                reason=(
                    f"New upstream serial {resolved.serial} "
                    f"(version {latest.name} was built from {latest.upstream_serial or 'unknown'})."
                ),
            )
            check.build = requested.build
            if requested.created:
                check.outcome = CheckOutcome.REBUILT
                check.message = requested.build.reason
            else:
                check.outcome = CheckOutcome.ALREADY_BUILDING
                check.message = (
                    f"Upstream serial {resolved.serial} is new, but build "
                    f"#{requested.build.pk} is already {requested.build.get_state_display()}."
                )
    check.save()
    log.info("upstream check of %s %s: %s", image.label, source.arch, check.message)
    return check


def check_all_upstreams(*, session: requests.Session | None = None) -> list[UpstreamCheck]:
    """The daily upstream task: one check per source of every live OS image.

    Each source on its own: an unexpected error (anything `check_upstream` does not turn
    into an outcome itself) is logged with the image's id and recorded as that source's
    check, in error, where the Triggers page shows checks; the other sources are checked.
    """
    sources = UpstreamSource.objects.filter(
        image__kind=ImageKind.OS, image__state__in=LIVE_STATES
    ).select_related("image")
    session = session or requests.Session()
    checks = []
    for source in sources:
        try:
            checks.append(check_upstream(source, session=session))
        except Exception as exc:  # one channel's failure must not cost the others their check
            log.exception(
                "upstream check of image %s (%s) %s failed",
                source.image_id,
                source.image.label,
                source.arch,
            )
            checks.append(
                UpstreamCheck.objects.create(
                    image=source.image,
                    arch=source.arch,
                    outcome=CheckOutcome.ERROR,
                    message=f"Could not check {source.channel_url}: "
                    f"unexpected {type(exc).__name__}: {exc}",
                )
            )
    return checks


# --- security advisories ---------------------------------------------------------------------


@dataclass
class AffectedPackage:
    """One package of one version that an advisory concerns."""

    name: str
    installed: str
    comparable: bool = True  # False: the distribution's version ordering is unknown


@dataclass
class AdvisoryMatch:
    """An image an advisory concerns, with the versions and packages that made it match."""

    image: Image
    scheme: str | None
    packages: dict[str, list[AffectedPackage]] = field(default_factory=dict)  # by arch

    @property
    def summary(self) -> str:
        seen = {(p.name, p.installed) for pkgs in self.packages.values() for p in pkgs}
        return ", ".join(f"{name} {installed}" for name, installed in sorted(seen))


def parse_packages(text: str) -> list[str]:
    """Package names from a form field: separated by commas, spaces or new lines."""
    names = []
    for raw in text.replace(",", " ").split():
        if raw not in names:
            names.append(raw)
    return names


def match_advisory(packages: list[str], fixed_version: str = "") -> list[AdvisoryMatch]:
    """Live images whose latest version (per architecture) holds an affected package older
    than `fixed_version` (any version when it is blank).

    When the distribution's ordering is unknown the package is listed as not comparable and
    the image matches: rebuilding once too often is cheaper than shipping a vulnerability.
    """
    wanted = set(packages)
    latest_first = ImageVersion.objects.order_by("arch", "-created_at", "-id")
    images = live_images().prefetch_related(Prefetch("versions", queryset=latest_first))
    matches = []
    for image in images:
        if image.is_os:
            distribution = image.distribution
        else:
            assert image.base_image is not None, f"InstantApp {image.label} has no base image"
            distribution = image.base_image.distribution
        scheme = versions.scheme_for(distribution)
        match = AdvisoryMatch(image=image, scheme=scheme)
        seen_arches: set[str] = set()
        for version in image.versions.all():
            if version.arch in seen_arches:
                continue
            seen_arches.add(version.arch)
            affected = []
            for package in version.manifest or []:
                name, installed = package.get("name"), package.get("version", "")
                if name not in wanted:
                    continue
                if not fixed_version:
                    affected.append(AffectedPackage(name, installed))
                elif scheme is None:
                    affected.append(AffectedPackage(name, installed, comparable=False))
                elif versions.is_older(scheme, installed, fixed_version):
                    affected.append(AffectedPackage(name, installed))
            if affected:
                match.packages[version.arch] = affected
        if match.packages:
            matches.append(match)
    return matches


def advisory_reason(advisory_id: str, match: AdvisoryMatch, fixed_version: str) -> str:
    """The build reason of an advisory rebuild: id, packages found, fixed version."""
    fixed = f" (fixed in {fixed_version})" if fixed_version else ""
    return f"Security advisory {advisory_id}: {match.summary}{fixed}."


def rebuild_for_advisory(
    advisory_id: str,
    packages: list[str],
    fixed_version: str,
    *,
    image_ids: Iterable[int],
    user: User | AnonymousUser | None = None,
) -> tuple[SecurityAdvisory, list[Requested]]:
    """Record the advisory and queue rebuilds of the confirmed images that still match.

    The match is computed again: ids come from a form, and an image rebuilt between the
    two pages may no longer hold the vulnerable package.
    """
    chosen = {int(pk) for pk in image_ids}
    matches = [m for m in match_advisory(packages, fixed_version) if m.image.pk in chosen]
    results: list[Requested] = []
    with transaction.atomic():
        advisory = SecurityAdvisory.objects.create(
            advisory_id=advisory_id,
            packages=packages,
            fixed_version=fixed_version,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        advisory.images.set([m.image for m in matches])
        for match in matches:
            reason = advisory_reason(advisory_id, match, fixed_version)
            for arch in build_arches(match.image):
                results.append(
                    request_build(
                        match.image, arch, trigger=Trigger.SECURITY, reason=reason, user=user
                    )
                )
        advisory.builds.set([r.build for r in results])
        audit.record(
            "trigger.security_advisory",
            actor=user,
            target=advisory,
            after={
                "packages": packages,
                "fixed_version": fixed_version,
                "images": [m.image.label for m in matches],
            },
            message=f"{advisory_id}: {len(results)} build(s) requested",
        )
    return advisory, results


def advisories_for(version: ImageVersion) -> list[tuple[SecurityAdvisory, list, bool | None]]:
    """For the version page: each advisory that matched the image, package statuses in this
    version, and whether the fixed version is now installed (None: no fixed version)."""
    advisories = SecurityAdvisory.objects.filter(images=version.image).order_by("-created_at")
    return [(a, a.status_of(version), a.is_fixed_in(version)) for a in advisories]


# --- bulk triggers ---------------------------------------------------------------------------


def ecosystem_reason(package_version: str) -> str:
    return f"Provider ecosystem package updated to {package_version}."


def new_product_reason(note: str) -> str:
    return f"New product: {note}"


def rebuild_all(
    *,
    trigger: str,
    reason: str,
    image_ids: Iterable[int] | None = None,
    user: User | AnonymousUser | None = None,
) -> list[Requested]:
    """Queue a rebuild of every live image (or of the confirmed ids among them)."""
    live = live_images().order_by("kind", "label")
    if image_ids is not None:
        live = live.filter(pk__in=[int(pk) for pk in image_ids])
    images = list(live)
    with transaction.atomic():
        results = _queue_all(images, trigger=trigger, reason=reason, user=user)
        audit.record(
            f"trigger.{trigger}",
            actor=user,
            after={"images": [image.label for image in images]},
            message=f"{reason} {len(results)} build(s) requested",
        )
    return results


# --- base image released ----------------------------------------------------------------------


def on_base_released(version: ImageVersion) -> list[Requested]:
    """Rebuild the live InstantApps built on `version`'s image, for its architecture.

    The releases engineer calls this when an OS image version is released. Calling it twice
    for one release queues nothing more: an app already built on this base version, or
    being built, is skipped.
    """
    base = version.image
    if not base.is_os:
        return []
    results = []
    for app in live_images().filter(base_image=base).order_by("label"):
        if version.arch not in app.architectures:
            continue
        if ImageVersion.objects.filter(image=app, base_version=version).exists():
            continue
        results.append(
            request_build(
                app,
                version.arch,
                trigger=Trigger.BASE_RELEASE,
                reason=f"Base image {base.label} released version {version.name}.",
            )
        )
    return results
