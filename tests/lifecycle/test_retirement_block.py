"""Retirement and deprecation of Block Storage (SBS) local images: retiring deletes the
images of both storage types and their snapshots (Block ones through the Block API); a Block
snapshot that stays in use, or a Block API that fails, leaves the LocalImage marked "deletion
failed" with the reason until a later daily run finishes it. Against localcloud (timer
backend) through the real SDK; the SBS images are made as the publish makes them
(tests.cloud.sbs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from catalog.choices import LocalImageState, StorageType
from catalog.models import AuditEntry, Image, ImageVersion, LocalImage
from cloud import clients
from cloud.publisher import DEPRECATED_TAG
from lifecycle import deprecation
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ZONES, Cloud
from tests.cloud.sbs import (
    block_snapshot_ids,
    block_snapshot_status,
    instance_ids,
    record,
    sbs_image,
)
from tests.lifecycle import COMMERCIAL_TYPES, deprecate_long_ago, enable_zones, published_version

pytestmark = pytest.mark.django_db

DELETE_BLOCK_SNAPSHOT = "DELETE /block/v1/zones/{zone}/snapshots/{snapshot_id}"


@pytest.fixture(autouse=True)
def _retention(settings) -> None:
    settings.RETENTION_DAYS = 180


@pytest.fixture
def image() -> Image:
    image = os_image("debian_bookworm")
    image.commercial_types = COMMERCIAL_TYPES
    image.save()
    enable_zones(*ZONES)
    return image


def version_on_both(image: Image, artefact: Path, tmp_path: Path, name: str) -> ImageVersion:
    """A version published for real on local storage in every zone (builds.publish), and on
    Block Storage in every zone as the publish does it, each with its LocalImage."""
    image.storage_types = [StorageType.LOCAL]
    image.save(update_fields=["storage_types"])
    copy = tmp_path / f"{name}.qcow2"
    shutil.copyfile(artefact, copy)
    version = published_version(image, name, copy)
    image.storage_types = list(StorageType.values)
    image.save(update_fields=["storage_types"])
    assert version.build is not None
    for zone in ZONES:
        record(version, sbs_image(zone, artefact, version.build.pk, name=f"{name}-sbs"))
    return version


def cloud_ids(zone: str) -> set[str]:
    """Every instance image, instance snapshot and Block snapshot id in a zone."""
    return instance_ids(zone) | block_snapshot_ids(zone)


def retired_entry(image: Image) -> AuditEntry:
    return AuditEntry.objects.get(image=image, action="deprecation.retired")


def sbs_locals(image: Image) -> list[LocalImage]:
    return list(
        LocalImage.objects.filter(version__image=image, storage_type=StorageType.SBS)
        .select_related("zone")
        .order_by("zone__code")
    )


def test_retiring_deletes_the_images_of_both_storage_types_and_their_snapshots(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path
) -> None:
    version_on_both(image, qcow2_artefact, tmp_path, "2026-11-01")
    locals_ = list(LocalImage.objects.filter(version__image=image).select_related("zone"))
    assert sorted({local.storage_type for local in locals_}) == sorted(StorageType.values)
    assert len(locals_) == 2 * len(ZONES)
    blocks = sbs_locals(image)
    for local in blocks:
        assert local.snapshot_id in block_snapshot_ids(local.zone.code)
        assert block_snapshot_status(local.zone.code, local.snapshot_id) == "in_use"
    deprecate_long_ago(image)

    assert deprecation.retire(image)

    for zone in ZONES:
        assert cloud_ids(zone) == set(), zone
    for local in LocalImage.objects.filter(version__image=image):
        assert (local.state, local.error) == (LocalImageState.DELETED, "")
    entry = retired_entry(image)
    removed = entry.after["cloud_removed"]
    for local in blocks:
        assert f"{local.zone.code} image {local.provider_image_id}" in removed
        assert f"{local.zone.code} block snapshot {local.snapshot_id}" in removed
    assert len(removed) == 4 * len(ZONES)
    assert entry.after["cloud_failed"] == [] and entry.after["cloud_already_gone"] == []
    assert "6 image(s) and 6 snapshot(s) removed" in entry.message


def test_a_block_snapshot_still_in_use_leaves_its_local_image_marked_until_released(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path, settings
) -> None:
    settings.CLOUD_DELETE_WAIT_SECONDS = 1
    version = version_on_both(image, qcow2_artefact, tmp_path, "2026-11-01")
    stuck = sbs_locals(image)[0]
    zone = stuck.zone.code
    # An image the factory did not record (a customer's, say) made from the same snapshot.
    holder = sbs_image(
        zone, qcow2_artefact, version.build.pk, name="holder", snapshot_id=stuck.snapshot_id
    )
    deprecate_long_ago(image)

    summary = deprecation.run_transitions()

    assert summary.retired == [image.label]
    stuck.refresh_from_db()
    assert stuck.state == LocalImageState.DELETE_FAILED
    assert f"block snapshot {stuck.snapshot_id} in {zone}: still in_use" in stuck.error
    assert f"used by instance_image {holder.image_id}" in stuck.error
    # A stuck snapshot is not a failing zone: the zone's other local images went.
    for local in LocalImage.objects.filter(version__image=image).exclude(pk=stuck.pk):
        assert local.state == LocalImageState.DELETED, local
    assert cloud_ids(zone) == {stuck.snapshot_id, holder.image_id}
    entry = retired_entry(image)
    assert entry.after["cloud_failed"] == [
        f"{zone} 2026-11-01 (x86_64, Block Storage): {stuck.error}"
    ]
    assert f"{zone} image {stuck.provider_image_id}" in entry.after["cloud_removed"]

    # The next daily run: still held, still marked, with the same reason.
    summary = deprecation.run_transitions()
    assert summary.cloud_retried == [image.label] and summary.cloud_left == [image.label]
    stuck.refresh_from_db()
    assert stuck.state == LocalImageState.DELETE_FAILED and "still in_use" in stuck.error

    # Once the holder is gone, the daily run finishes it.
    clients.instance_api().delete_image(zone=zone, image_id=holder.image_id)
    summary = deprecation.run_transitions()
    assert summary.cloud_retried == [image.label] and summary.cloud_left == []
    stuck.refresh_from_db()
    assert (stuck.state, stuck.error) == (LocalImageState.DELETED, "")
    assert cloud_ids(zone) == set()
    retried = AuditEntry.objects.filter(
        image=image, action="deprecation.cloud_removal_retried"
    ).first()
    assert retried is not None
    assert retried.after["cloud_removed"] == [f"{zone} block snapshot {stuck.snapshot_id}"]
    assert retried.after["cloud_already_gone"] == [f"{zone} image {stuck.provider_image_id}"]


def test_a_block_api_answering_5xx_leaves_the_zone_marked_for_the_next_run(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path, settings
) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 2
    version_on_both(image, qcow2_artefact, tmp_path, "2026-11-01")
    deprecate_long_ago(image)
    # Every Block snapshot deletion of the run fails, on both attempts, in the first zone.
    cloud.fault(operation=DELETE_BLOCK_SNAPSHOT, count=2, status=503, message="block offline")

    assert deprecation.retire(image)

    failed = [
        local
        for local in LocalImage.objects.filter(version__image=image).select_related("zone")
        if local.state == LocalImageState.DELETE_FAILED
    ]
    assert [(local.zone.code, local.storage_type) for local in failed] == [
        ("fr-par-1", StorageType.SBS)
    ]
    assert "block offline" in failed[0].error
    assert cloud_ids("fr-par-1") == {failed[0].snapshot_id}  # its image went, not the snapshot
    assert cloud_ids("fr-par-2") == set() and cloud_ids("nl-ams-1") == set()
    assert "left for the next daily run in fr-par-1" in retired_entry(image).message

    summary = deprecation.run_transitions()

    assert summary.cloud_retried == [image.label] and summary.cloud_left == []
    assert cloud_ids("fr-par-1") == set()
    assert set(LocalImage.objects.filter(version__image=image).values_list("state", flat=True)) == {
        LocalImageState.DELETED
    }


def test_the_feed_only_publisher_marks_both_kinds_of_image_deprecated(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "feed")
    version_on_both(image, qcow2_artefact, tmp_path, "2026-11-01")

    deprecate_long_ago(image)

    api = clients.instance_api()
    locals_ = list(LocalImage.objects.filter(version__image=image).select_related("zone"))
    assert {local.storage_type for local in locals_} == set(StorageType.values)
    for local in locals_:
        tags = api.get_image(zone=local.zone.code, image_id=local.provider_image_id).image.tags
        assert DEPRECATED_TAG in tags, local
        assert any(tag.startswith("factory:valid-until=") for tag in tags), local


def test_retiring_a_real_publish_of_every_storage_type_leaves_nothing_in_the_cloud(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path
) -> None:
    # Published by builds.publish with the image's storage types (both by default).
    copy = tmp_path / "2026-11-01.qcow2"
    shutil.copyfile(qcow2_artefact, copy)
    published_version(image, "2026-11-01", copy)
    locals_ = list(LocalImage.objects.filter(version__image=image).select_related("zone"))
    assert locals_
    for local in locals_:
        assert {local.provider_image_id, local.snapshot_id} <= cloud_ids(local.zone.code)
    deprecate_long_ago(image)

    assert deprecation.retire(image)

    for zone in ZONES:
        assert cloud_ids(zone) == set(), zone
    assert set(LocalImage.objects.filter(version__image=image).values_list("state", flat=True)) == {
        LocalImageState.DELETED
    }
    entry = retired_entry(image)
    assert entry.after["cloud_failed"] == [] and entry.after["cloud_already_gone"] == []
    snapshot_label = {StorageType.LOCAL: "snapshot", StorageType.SBS: "block snapshot"}
    assert sorted(entry.after["cloud_removed"]) == sorted(
        [f"{local.zone.code} image {local.provider_image_id}" for local in locals_]
        + [
            f"{local.zone.code} {snapshot_label[local.storage_type]} {local.snapshot_id}"
            for local in locals_
        ]
    )
