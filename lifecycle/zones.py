"""The "zone enabled" refresh trigger: publish the current versions in a newly enabled zone.

When a zone goes from disabled to enabled (the zones page, the admin, a script: anything
that saves a `catalog.Zone`), every live image's current version, the latest released
version per image and architecture, is queued for publishing there: a django-q2 task on the
version's architecture queue (`builds.queue.queue_for`) that runs
`builds.publish.retry_zone` for that version's build and the new zone. Each queued publish
is audited with its reason (trigger "New zone") on the version's image.

catalog does not import lifecycle: the trigger is a `pre_save`/`post_save` receiver pair on
`catalog.Zone`, connected in `LifecycleConfig.ready()`. The pre_save receiver remembers
whether the stored row was enabled, so only a real disabled -> enabled transition fires;
a zone created already enabled, or saved again while enabled, queues nothing. Bulk
`QuerySet.update()` sends no signals and is not seen.

Tasks are sent once the transaction commits, so a rolled-back toggle queues nothing.
Once published there, the version is tested in the new zone on each storage type it was
published with there (`queue_zone_tests`), and the new zone's local image of a storage type
is added to the released Marketplace version only when every check passed there on that
storage type (`zone_tested`): a release is only offered where, and as, it was tested.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.db import transaction

from builds.choices import Trigger
from builds.models import Build
from builds.publish import retry_zone
from builds.queue import queue_for
from catalog import audit
from catalog.choices import LocalImageState
from catalog.current import current_versions
from catalog.models import ImageVersion, LocalImage, Zone

log = logging.getLogger(__name__)

# The django-q2 task that publishes one version in one zone (a dotted path, as stored).
PUBLISH_TASK = "lifecycle.zones.publish_in_zone"
QUEUED_ACTION = "zone.publish_queued"
SKIPPED_ACTION = "zone.publish_skipped"
PUBLISHED_ACTION = "zone.published"
TESTS_QUEUED_ACTION = "zone.tests_queued"
TESTS_FAILED_ACTION = "zone.tests_failed"
OFFERED_ACTION = "zone.offered"

_WAS_ENABLED = "_lifecycle_zone_was_enabled"


def build_id_of(version: ImageVersion) -> int | None:
    try:
        build = version.build
    except Build.DoesNotExist:
        return None
    return build.pk if build is not None else None


def reason_for(version: ImageVersion, zone: Zone) -> str:
    """The reason recorded for a publish this trigger queued, in words."""
    return (
        f"{Trigger.NEW_ZONE.label}: zone {zone.code} was enabled; publishing the current "
        f"version {version.name} ({version.arch}) of {version.image.label} there."
    )


def queue_zone_publishes(zone: Zone) -> list[ImageVersion]:
    """Queue (after commit) the publish of every current version in `zone`; audited.

    Returns the versions queued. A version without a build or with its artefact gone is
    not queued: the skip is audited with the reason, since publishing needs the QCOW2.
    """
    queued: list[ImageVersion] = []
    for version in current_versions():
        build_id = build_id_of(version)
        artefact = version.artefact_path
        if build_id is None or not artefact:
            why = "it has no build" if build_id is None else "its artefact is gone"
            audit.record(
                SKIPPED_ACTION,
                image=version.image,
                target=version,
                after={"zone": zone.code, "trigger": Trigger.NEW_ZONE},
                message=f"Zone {zone.code} was enabled, but {version} cannot be published "
                f"there: {why}. Rebuild the image to offer it in {zone.code}.",
            )
            log.warning("zone %s enabled: %s not published there: %s", zone.code, version, why)
            continue
        reason = reason_for(version, zone)
        audit.record(
            QUEUED_ACTION,
            image=version.image,
            target=version,
            after={
                "zone": zone.code,
                "build_id": build_id,
                "trigger": Trigger.NEW_ZONE,
                "queue": queue_for(version.arch),
            },
            message=reason,
        )
        enqueue_publish(build_id, version, zone)
        queued.append(version)
    if queued:
        log.info("zone %s enabled: %d current version(s) queued", zone.code, len(queued))
    return queued


def enqueue_publish(build_id: int, version: ImageVersion, zone: Zone) -> None:
    """Send the publish task to the version's architecture queue once the transaction commits."""
    from django_q.tasks import async_task

    args = (build_id, version.pk, zone.code)
    cluster = queue_for(version.arch)
    name = f"publish-{build_id}-{zone.code}"

    def send() -> None:
        async_task(PUBLISH_TASK, *args, cluster=cluster, task_name=name, group="zones")

    transaction.on_commit(send)


def publish_in_zone(build_id: int, version_id: int, zone_code: str) -> str:
    """The django-q2 task: publish one version in one zone through `retry_zone`.

    Reuses whatever an earlier attempt left in that zone. Raises
    `builds.publish.PublishError` when the zone refused (django-q2 records the failure).
    """
    version = ImageVersion.objects.select_related("image").get(pk=version_id)
    zone = Zone.objects.get(code=zone_code)
    if not zone.enabled:
        return f"{zone_code} was disabled again: {version} not published there"
    locals_: list[LocalImage] = retry_zone(
        build_id, version, zone, artefact=Path(version.artefact_path)
    )
    images = {local.storage_type: local.provider_image_id for local in locals_}
    listed = ", ".join(f"{image_id} ({kind})" for kind, image_id in images.items())
    audit.record(
        PUBLISHED_ACTION,
        image=version.image,
        target=version,
        after={"zone": zone_code, "provider_image_ids": images},
        message=f"{version} published in {zone_code} (zone enabled): {listed}.",
    )
    queue_zone_tests(version, zone)
    return f"{version} published in {zone_code}: {listed}"


def queue_zone_tests(version: ImageVersion, zone: Zone) -> None:
    """Test `version` in the newly enabled `zone`, one run per storage type it is published
    with there; `zone_tested` offers each storage type's image once every check passed on it
    (a release is only offered where it was tested)."""
    from builds.testing import orchestration

    runs = orchestration.create_runs(version, [zone], reason=f"Zone {zone.code} enabled")
    orchestration.enqueue(runs)
    storage = [str(r.storage_type) for r in runs]
    words = " and ".join(orchestration.storage_words(t) for t in storage)
    audit.record(
        TESTS_QUEUED_ACTION,
        image=version.image,
        target=version,
        after={
            "zone": zone.code,
            "test_run": runs[0].pk,
            "test_runs": [r.pk for r in runs],
            "storage_types": storage,
        },
        message=f"{version} is being tested in {zone.code} on {words} (zone enabled).",
    )


def zone_tested(sender: Any, test_run: Any, **kwargs: Any) -> None:
    """A test run ended: if it was a zone-enabled run of the image's current release and
    every check passed there on the run's storage type, add that zone's local image of that
    storage type to the released Marketplace version (each storage type is offered by its
    own run, once it is green)."""
    from builds.testing import orchestration
    from cloud.publisher import get_publisher
    from lifecycle.releases import current_release

    if not test_run.reason.startswith("Zone ") or test_run.state != "finished":
        return
    version, zone = test_run.version, test_run.zone
    storage = str(test_run.storage_type)
    words = orchestration.storage_words(storage)
    release = current_release(version.image)
    if release is None or release.version_id != version.pk:
        return
    grid = orchestration.matrix(version, [zone])
    if not grid.green(zone.code, storage):
        audit.record(
            TESTS_FAILED_ACTION,
            image=version.image,
            target=version,
            after={"zone": zone.code, "storage_type": storage},
            message=f"{version} did not pass every check in {zone.code} on {words}: not "
            f"offered there on {words}.",
        )
        return
    local = (
        LocalImage.objects.filter(
            version=version, zone=zone, storage_type=storage, state=LocalImageState.AVAILABLE
        )
        .exclude(provider_image_id="")
        .first()
    )
    if local is None:
        log.warning("%s passed in %s on %s but has no image there any more", version, zone, words)
        return
    get_publisher().publish_release(version.image, version, [local])
    audit.record(
        OFFERED_ACTION,
        image=version.image,
        target=version,
        after={
            "zone": zone.code,
            "storage_type": storage,
            "provider_image_id": local.provider_image_id,
        },
        message=f"{version} passed every check in {zone.code} on {words}: now offered there "
        f"on {words}.",
    )


# --- the signal receivers (connected in lifecycle.apps) -----------------------------------------


def remember_enabled(sender: type[Zone], instance: Zone, raw: bool = False, **kwargs: Any) -> None:
    """pre_save: note whether the stored row was enabled (None for a new zone)."""
    if raw or instance.pk is None:
        setattr(instance, _WAS_ENABLED, None)
        return
    stored = Zone.objects.filter(pk=instance.pk).values_list("enabled", flat=True).first()
    setattr(instance, _WAS_ENABLED, stored)


def zone_saved(
    sender: type[Zone], instance: Zone, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """post_save: a zone that went from disabled to enabled gets the current versions."""
    was_enabled = getattr(instance, _WAS_ENABLED, None)
    if hasattr(instance, _WAS_ENABLED):
        delattr(instance, _WAS_ENABLED)
    if raw or created or not instance.enabled or was_enabled is not False:
        return
    queue_zone_publishes(instance)


def connect() -> None:
    """Connect the receivers to `catalog.Zone` (once, whatever the number of calls)."""
    from django.db.models.signals import post_save, pre_save

    pre_save.connect(remember_enabled, sender=Zone, dispatch_uid="lifecycle.zones.pre_save")
    post_save.connect(zone_saved, sender=Zone, dispatch_uid="lifecycle.zones.post_save")
    from builds.signals import test_run_ended

    test_run_ended.connect(zone_tested, dispatch_uid="lifecycle.zones.zone_tested")
