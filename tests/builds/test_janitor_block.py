"""The janitor and Block Storage, against localcloud (timer backend) through the real SDK:
the factory's leftover Block snapshots and SBS images are found and deleted by the same rules
as Instance ones, and what a LocalImage references (by image id, by snapshot id, or through
its image) is kept. The SBS images are made as the publish makes them (tests.cloud.sbs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from builds.choices import BuildState
from builds.janitor import run_janitor
from builds.models import Build, JanitorRun
from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from tests.builds.factories import publish_for_real
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ZONES, Cloud
from tests.cloud.sbs import (
    block_snapshot_ids,
    import_block_snapshot,
    instance_image_ids,
    record,
    sbs_image,
)

DELETE_BLOCK_SNAPSHOT = "DELETE /block/v1/zones/{zone}/snapshots/{snapshot_id}"
PARIS = "fr-par-1"


@pytest.fixture
def zones(db) -> None:
    for code in ZONES:
        Zone.objects.create(code=code, enabled=True)


def build_in(label: str, state: str) -> Build:
    """A build of a new version of `label`, in `state`."""
    image = os_image(label)
    version = ImageVersion.objects.create(image=image, arch="x86_64", name="2026-11-26")
    return Build.objects.create(image=image, arch="x86_64", state=state, version=version)


def removed(run: JanitorRun) -> set[tuple[str, str]]:
    """(kind, id) of what a run deleted, the uploads left out (they go once a build is done,
    see test_janitor)."""
    return {(r["kind"], r["id"]) for r in run.removed if r["kind"] != "object"}


def test_janitor_deletes_leftover_block_snapshots_and_sbs_images_and_keeps_what_is_published(
    cloud: Cloud, zones: None, qcow2_artefact: Path
) -> None:
    done = build_in("debian_bookworm", BuildState.DONE)
    failed = build_in("ubuntu_noble", BuildState.FAILED)
    running = build_in("rocky_9", BuildState.TESTING)
    assert done.version is not None
    # Published: an SBS image and its Block snapshot, both recorded.
    published = sbs_image(PARIS, qcow2_artefact, done.pk, name="published")
    record(done.version, published)
    # Published in another zone, with only its image recorded: its snapshot is kept through it.
    by_image = sbs_image("fr-par-2", qcow2_artefact, done.pk, name="by-image")
    record(done.version, by_image)
    LocalImage.objects.filter(provider_image_id=by_image.image_id).update(snapshot_id="")
    # A duplicate SBS image of the done build, over its own Block snapshot, not recorded.
    duplicate = sbs_image(PARIS, qcow2_artefact, done.pk, name="duplicate")
    # A Block snapshot the failed build left (its image was never made).
    leftover = import_block_snapshot(PARIS, qcow2_artefact, failed.pk, name="leftover")
    # A Block snapshot of the failed build that an image of a running build is made from.
    held = import_block_snapshot(PARIS, qcow2_artefact, failed.pk, name="held")
    holder = sbs_image(PARIS, qcow2_artefact, running.pk, name="holder", snapshot_id=held.id)
    # A Block snapshot of a build that no longer exists, in another zone.
    stray = import_block_snapshot("nl-ams-1", qcow2_artefact, 999, name="stray")

    dry = run_janitor(older_than=dt.timedelta(0), dry_run=True)
    assert dry.errors == []
    found = {f["id"]: f for f in dry.findings}
    kinds = {f["id"]: f["kind"] for f in dry.findings}
    assert kinds[published.image_id] == kinds[duplicate.image_id] == "image"
    assert kinds[published.snapshot_id] == kinds[leftover.id] == "block_snapshot"
    actions = {f["id"]: f["action"] for f in dry.findings}
    for kept in (published, by_image):
        assert actions[kept.image_id] == actions[kept.snapshot_id] == "kept"
    assert found[published.snapshot_id]["reason"] == (
        f"in use by build #{done.pk}'s published images"
    )
    assert found[by_image.snapshot_id]["reason"] == (
        f"in use by build #{done.pk}'s published images"
    )
    assert actions[holder.image_id] == actions[held.id] == "kept"
    assert f"image {holder.image_id}, which stays, is made from it" in found[held.id]["reason"]
    for orphan in (duplicate.image_id, duplicate.snapshot_id, leftover.id, stray.id):
        assert actions[orphan] == "would delete", orphan
    assert found[stray.id]["reason"] == "build #999 no longer exists"
    assert found[leftover.id]["reason"] == f"build #{failed.pk} failed"

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert run.errors == []
    assert removed(run) == {
        ("image", duplicate.image_id),
        ("block_snapshot", duplicate.snapshot_id),
        ("block_snapshot", leftover.id),
        ("block_snapshot", stray.id),
    }
    assert instance_image_ids(PARIS) == {published.image_id, holder.image_id}
    assert block_snapshot_ids(PARIS) == {published.snapshot_id, held.id}
    assert block_snapshot_ids("fr-par-2") == {by_image.snapshot_id}
    assert block_snapshot_ids("nl-ams-1") == set()
    assert set(LocalImage.objects.values_list("state", flat=True)) == {LocalImageState.AVAILABLE}

    # The running build fails: its image goes, then the snapshot it held.
    Build.objects.filter(pk=running.pk).update(state=BuildState.FAILED)
    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)
    assert run.errors == []
    assert removed(run) == {
        ("image", holder.image_id),
        ("block_snapshot", held.id),
    }
    assert block_snapshot_ids(PARIS) == {published.snapshot_id}


def test_an_sbs_image_of_a_failed_build_goes_with_its_local_image_marked_deleted(
    cloud: Cloud, zones: None, qcow2_artefact: Path
) -> None:
    failed = build_in("debian_bookworm", BuildState.FAILED)
    assert failed.version is not None
    made = sbs_image(PARIS, qcow2_artefact, failed.pk)
    local = record(failed.version, made)
    assert local.storage_type == StorageType.SBS

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert run.errors == []
    assert removed(run) == {
        ("image", made.image_id),
        ("block_snapshot", made.snapshot_id),
    }
    local.refresh_from_db()
    assert local.state == LocalImageState.DELETED
    assert cloud.factory_resources() == []


def test_a_block_snapshot_stuck_creating_is_an_error_and_the_run_goes_on(
    cloud: Cloud, zones: None, qcow2_artefact: Path, settings
) -> None:
    settings.JANITOR_WAIT_SECONDS = 1
    failed = build_in("debian_bookworm", BuildState.FAILED)
    stuck = import_block_snapshot(PARIS, qcow2_artefact, failed.pk, name="stuck", wait=False)
    other = import_block_snapshot("fr-par-2", qcow2_artefact, failed.pk, name="other")
    # localcloud settles transitions by its own clock: set back a day, the import stays
    # "creating" for the whole run.
    cloud.process.operator("PUT", "clock", offset_seconds=-86400)
    try:
        run = run_janitor(older_than=dt.timedelta(0), dry_run=False)
    finally:
        cloud.process.operator("PUT", "clock", offset_seconds=0)

    assert len(run.errors) == 1
    assert run.errors[0].startswith(f"deleting block_snapshot {stuck.id} in {PARIS}: ")
    assert (
        f"delete block snapshot {stuck.id} in {PARIS}: still creating after 1 s" in (run.errors[0])
    )
    assert {f["id"]: f["action"] for f in run.findings}[stuck.id] == "error"
    assert ("block_snapshot", other.id) in removed(run)
    assert stuck.id in block_snapshot_ids(PARIS)

    # The import ends: the next run deletes it.
    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)
    assert run.errors == []
    assert block_snapshot_ids(PARIS) == set()


def test_a_block_api_answering_5xx_is_an_error_then_the_next_run_deletes(
    cloud: Cloud, zones: None, qcow2_artefact: Path, settings
) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 2
    failed = build_in("debian_bookworm", BuildState.FAILED)
    leftover = import_block_snapshot(PARIS, qcow2_artefact, failed.pk, name="leftover")
    cloud.fault(operation=DELETE_BLOCK_SNAPSHOT, count=2, status=503, message="block offline")

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert len(run.errors) == 1
    assert f"deleting block_snapshot {leftover.id} in {PARIS}" in run.errors[0]
    assert "block offline" in run.errors[0]
    assert leftover.id in block_snapshot_ids(PARIS)

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)
    assert run.errors == []
    assert ("block_snapshot", leftover.id) in removed(run)
    assert block_snapshot_ids(PARIS) == set()


def test_a_real_publish_of_every_storage_type_is_kept_then_cleaned_when_its_build_fails(
    cloud: Cloud, zones: None, qcow2_artefact: Path
) -> None:
    # Published by builds.publish with the image's storage types (both by default).
    image = os_image("debian_bookworm")
    version = ImageVersion.objects.create(
        image=image, arch="x86_64", name="2026-11-26", artefact_path=str(qcow2_artefact)
    )
    build = publish_for_real(version, qcow2_artefact)
    Build.objects.filter(pk=build.pk).update(state=BuildState.DONE)
    locals_ = list(LocalImage.objects.filter(version=version).select_related("zone"))
    assert locals_ and all(local.state == LocalImageState.AVAILABLE for local in locals_)
    snapshot_kind = {StorageType.LOCAL: "snapshot", StorageType.SBS: "block_snapshot"}
    published = {("image", local.provider_image_id) for local in locals_} | {
        (snapshot_kind[local.storage_type], local.snapshot_id) for local in locals_
    }

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert run.errors == [] and removed(run) == set()  # only the uploads went
    assert {rid for _kind, rid in cloud.factory_resources()} == {rid for _kind, rid in published}

    Build.objects.filter(pk=build.pk).update(state=BuildState.FAILED)
    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert run.errors == []
    assert removed(run) == published
    assert cloud.factory_resources() == []
    assert set(LocalImage.objects.filter(version=version).values_list("state", flat=True)) == {
        LocalImageState.DELETED
    }
