"""Releasing a version, withdrawing it, and what changed since the previous release.

- `is_releasable(version)`: published in every enabled zone on each storage type it is
  published with (local storage, Block Storage), and every check passed on each of them.
- `release(version, user, override_reason="")`: publish it through the Marketplace publisher
  (cloud.publisher) as the image's current version, and record it. Without a green matrix
  it needs a written override reason, kept on the Release row and in the audit log.
- `withdraw(version, user, reason)`: the previous release becomes current again, without
  rebuilding anything (as image families and channels do elsewhere).
- `release_notes(version)`: package diff, upstream serial and recipe changes against the
  previous released version.

The cloud is called before the database is changed: a failed publish changes nothing here,
and publishing again is idempotent (the publisher reuses a Marketplace version by name).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from builds.testing import orchestration
from catalog import audit
from catalog.choices import NOT_BUILT_HERE, LocalImageState, VersionState
from catalog.manifests import ManifestDiff, diff_manifests
from catalog.models import Image, ImageVersion, LocalImage, Zone
from catalog.recipes import summarize
from cloud.publisher import get_publisher
from lifecycle.models import Release

log = logging.getLogger(__name__)

# States a version can be released from. A withdrawn version is not re-released: build (or
# release) another one, so that the history reads forward.
RELEASABLE_FROM = (VersionState.PUBLISHED, VersionState.TESTED, VersionState.TEST_FAILED)


class ReleaseError(Exception):
    """A release or a withdrawal was refused; the message says why, in words."""


@dataclass(frozen=True)
class Readiness:
    """The verdict on a version: ready, why (or why not), and whether a manager may
    release it anyway with a written reason."""

    ready: bool
    reason: str
    overridable: bool


def readiness(version: ImageVersion) -> Readiness:
    """Assess `version` against the matrix of enabled zones x storage types x checks: every
    storage type the version is published with must be published, and green, in every
    enabled zone."""
    if version.is_adopted:
        # No artefact and no test run: neither a matrix nor an override can vouch for it.
        return Readiness(False, NOT_BUILT_HERE, False)
    if version.state == VersionState.RELEASED:
        return Readiness(False, "This version is already released.", False)
    if version.state not in RELEASABLE_FROM:
        return Readiness(
            False,
            f"A {version.get_state_display().lower()} version cannot be released.",
            False,
        )
    enabled = list(Zone.objects.filter(enabled=True).values_list("code", flat=True))
    if not enabled:
        return Readiness(False, "No zone is enabled: there is nowhere to release to.", False)
    published = orchestration.published_storage(version)
    if not any(published.get(code) for code in enabled):
        return Readiness(False, "Not published in any enabled zone yet.", False)
    types = orchestration.ordered_storage(t for code in enabled for t in published.get(code, []))
    gaps = []
    for storage in types:
        missing = [code for code in enabled if storage not in published.get(code, [])]
        if missing:
            gaps.append(
                f"Not published on {orchestration.storage_words(storage)} in "
                f"{', '.join(missing)} (published there in {len(enabled) - len(missing)} of "
                f"{len(enabled)} enabled zones)."
            )
    if gaps:
        return Readiness(False, " ".join(gaps), True)
    # The matrix's verdict: the latest result of every check in every enabled zone, on
    # every storage type.
    result = orchestration.verdict(version)
    if not result.passed:
        return Readiness(False, result.reason, True)
    words = " and ".join(orchestration.storage_words(t) for t in types)
    return Readiness(
        True,
        f"Published in every enabled zone ({len(enabled)}) on {words}, and every check "
        "passed there.",
        False,
    )


def is_releasable(version: ImageVersion) -> tuple[bool, str]:
    """(True, why) when the matrix is green; else (False, the reason in words)."""
    verdict = readiness(version)
    return verdict.ready, verdict.reason


def current_release(image: Image) -> Release | None:
    """The image's current release (what its label resolves to), if any."""
    return Release.objects.current_for(image)


def previous_release(release: Release) -> Release | None:
    """The open release before `release` of the same image: where a withdraw goes back to."""
    return (
        Release.objects.of_image(release.version.image)
        .active()
        .exclude(pk=release.pk)
        .filter(released_at__lte=release.released_at)
        .exclude(version=release.version)
        .select_related("version")
        .newest_first()
        .first()
    )


def release(version: ImageVersion, user: Any, override_reason: str = "") -> Release:
    """Publish `version` as its image's current version and record who did it.

    Raises ReleaseError when refused, cloud.retries.CloudError when publishing failed (then
    nothing is recorded here).
    """
    override_reason = (override_reason or "").strip()
    verdict = readiness(version)
    if not verdict.ready:
        if not verdict.overridable:
            raise ReleaseError(verdict.reason)
        if not override_reason:
            raise ReleaseError(
                f"{verdict.reason} To release it anyway, give a written reason for the override."
            )
    image = version.image
    local_images = [
        li
        for li in version.local_images.select_related("zone")
        if li.state == LocalImageState.AVAILABLE and li.provider_image_id
    ]
    publisher = get_publisher()
    marketplace_id = publisher.publish_release(image, version, local_images)
    publisher.set_current(image, version)
    with transaction.atomic():
        locked = ImageVersion.objects.select_for_update().get(pk=version.pk)
        if locked.state not in RELEASABLE_FROM:
            # Someone released it meanwhile; the cloud calls above were idempotent.
            raise ReleaseError(f"This version is {locked.get_state_display().lower()} now.")
        previous = current_release(image)
        now = timezone.now()
        row = Release.objects.create(
            version=version,
            released_by=user if getattr(user, "is_authenticated", False) else None,
            released_at=now,
            readiness=verdict.reason,
            override_reason="" if verdict.ready else override_reason,
            publisher=publisher.name,
            marketplace_version_id=marketplace_id,
        )
        before = audit.snapshot(locked, ["state", "released_at"])
        locked.state, locked.released_at = VersionState.RELEASED, now
        locked.save(update_fields=["state", "released_at"])
        version.state, version.released_at = locked.state, locked.released_at
        message = "" if verdict.ready else f"Override: {override_reason} (matrix: {verdict.reason})"
        audit.record(
            "version.released",
            actor=user,
            image=image,
            target=version,
            before={**before, "current": str(previous.version) if previous else None},
            after={
                **audit.snapshot(locked, ["state", "released_at"]),
                "current": str(version),
                "publisher": publisher.name,
                "marketplace_version_id": marketplace_id,
                "override_reason": row.override_reason,
            },
            message=message,
        )
    log.info("released %s through %s", version, publisher.name)
    if image.is_os:
        # InstantApps built on this image are rebuilt on the new release.
        from lifecycle.refresh import on_base_released

        on_base_released(version)
    return row


def withdraw(version: ImageVersion, user: Any, reason: str) -> Release:
    """Make the previous release current again and mark `version` withdrawn.

    Returns the release that is current now. Raises ReleaseError when refused,
    cloud.retries.CloudError when the cloud did not follow.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ReleaseError("Say why the version is withdrawn.")
    image = version.image
    current = current_release(image)
    if current is None or current.version_id != version.pk:
        where = f" (the current release is {current.version.name})" if current else ""
        raise ReleaseError(f"Only the current release can be withdrawn{where}.")
    previous = previous_release(current)
    if previous is None:
        raise ReleaseError(
            "There is no earlier release to go back to: withdrawing would leave the label "
            "with nothing to launch. Release a fixed version instead (or deprecate the image)."
        )
    get_publisher().set_current(image, previous.version)
    with transaction.atomic():
        locked = Release.objects.select_for_update().get(pk=current.pk)
        if not locked.withdraw(user, reason):
            raise ReleaseError("This release was withdrawn meanwhile.")
        before = audit.snapshot(version, ["state"])
        ImageVersion.objects.filter(pk=version.pk).update(state=VersionState.WITHDRAWN)
        version.state = VersionState.WITHDRAWN
        audit.record(
            "version.withdrawn",
            actor=user,
            image=image,
            target=version,
            before={**before, "current": str(version)},
            after={"state": VersionState.WITHDRAWN, "current": str(previous.version)},
            message=reason,
        )
    log.info("withdrew %s; %s is current again", version, previous.version)
    return previous


# --- release notes ----------------------------------------------------------------------------


def previous_released_version(version: ImageVersion) -> ImageVersion | None:
    """The latest version of the same image and architecture, created before `version`,
    that was released and not withdrawn: what customers had before."""
    return (
        ImageVersion.objects.filter(
            image_id=version.image_id,
            arch=version.arch,
            releases__withdrawn_at__isnull=True,
            releases__isnull=False,
        )
        .filter(created_at__lt=version.created_at)
        .exclude(pk=version.pk)
        .order_by("-created_at", "-id")
        .distinct()
        .first()
    )


def _step_text(step: dict) -> str:
    text = summarize(step.get("type", ""), step.get("params") or {})
    label = step.get("type", "?")
    return f"{label}: {text}" if text else label


def diff_recipes(old: list[dict], new: list[dict]) -> dict[str, list]:
    """Steps added, removed and changed between two recipes as executed.

    Steps are matched by type and rank among the steps of that type (the second
    install_packages of one recipe against the second of the other), so that inserting a
    step of one type does not show every later step as changed.
    """

    def keyed(steps: list[dict]) -> dict[tuple[str, int], dict]:
        seen: dict[str, int] = {}
        out: dict[tuple[str, int], dict] = {}
        for step in steps or []:
            kind = str(step.get("type", ""))
            seen[kind] = seen.get(kind, 0) + 1
            out[(kind, seen[kind])] = step
        return out

    before, after = keyed(old), keyed(new)
    order = list(after) + [k for k in before if k not in after]
    added = [_step_text(after[k]) for k in order if k not in before]
    removed = [_step_text(before[k]) for k in order if k not in after]
    changed = [
        (_step_text(before[k]), _step_text(after[k]))
        for k in order
        if k in before and k in after and _comparable(before[k]) != _comparable(after[k])
    ]
    return {"added": added, "removed": removed, "changed": changed}


def _comparable(step: dict) -> tuple:
    return (step.get("params") or {}, step.get("enabled", True))


def release_notes(version: ImageVersion) -> dict[str, Any]:
    """What changed since the previous released version: packages, upstream serial, recipe.

    Keys: previous (ImageVersion or None), packages (ManifestDiff or None when there is no
    previous release), package_count, upstream_serial {before, after, changed}, recipe
    {added, removed, changed}, empty (nothing changed at all).
    """
    previous = previous_released_version(version)
    packages: ManifestDiff | None = None
    recipe: dict[str, list[Any]] = {"added": [], "removed": [], "changed": []}
    serial = {"before": "", "after": version.upstream_serial, "changed": False}
    if previous is not None:
        packages = diff_manifests(previous.manifest or [], version.manifest or [])
        recipe = diff_recipes(previous.recipe or [], version.recipe or [])
        serial = {
            "before": previous.upstream_serial,
            "after": version.upstream_serial,
            "changed": previous.upstream_serial != version.upstream_serial,
        }
    return {
        "previous": previous,
        "packages": packages,
        "package_count": len(version.manifest or []),
        "upstream_serial": serial,
        "recipe": recipe,
        "empty": previous is not None
        and packages is not None
        and packages.empty
        and not serial["changed"]
        and not any(recipe.values()),
    }


def local_images_of(version: ImageVersion) -> list[LocalImage]:
    """The version's available local images, by zone."""
    return [
        li
        for li in version.local_images.select_related("zone").order_by("zone__code")
        if li.state == LocalImageState.AVAILABLE
    ]
