"""cloud.deletion on Block Storage: an image over a Block snapshot is removed with its
snapshot through the Block API, a snapshot in use or in transition is waited for up to the
timeout, and a recorded snapshot id of unknown kind is looked for in both APIs. Against
localcloud (timer backend) through the real SDK."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud import clients, deletion, tags
from cloud.retries import CloudError, CloudTimeout
from tests.cloud.localcloud import Cloud
from tests.cloud.sbs import (
    block_snapshot_ids,
    block_snapshot_status,
    import_block_snapshot,
    instance_image_ids,
    sbs_image,
)

ZONE = "fr-par-1"
DELETE_BLOCK_SNAPSHOT = "DELETE /block/v1/zones/{zone}/snapshots/{snapshot_id}"
DELETE_INSTANCE_SNAPSHOT = "DELETE /instance/v1/zones/{zone}/snapshots/{snapshot_id}"


def test_removing_an_sbs_image_deletes_the_image_then_its_block_snapshot(
    cloud: Cloud, qcow2_artefact: Path
) -> None:
    made = sbs_image(ZONE, qcow2_artefact, 41)
    assert block_snapshot_status(ZONE, made.snapshot_id) == "in_use"  # the image holds it
    assert deletion.block_snapshots_of(
        clients.instance_api().get_image(zone=ZONE, image_id=made.image_id).image
    ) == [made.snapshot_id]

    # The Instance API is not asked to delete it: a fault armed there stays armed.
    cloud.fault(operation=DELETE_INSTANCE_SNAPSHOT, count=1, status=500)

    removal = deletion.ImageRemoval(ZONE, made.image_id, block_snapshot_ids=[made.snapshot_id])
    removal.run(timeout=10)

    assert removal.deleted == [f"image {made.image_id}", f"block snapshot {made.snapshot_id}"]
    assert removal.already_gone == []
    assert made.image_id not in instance_image_ids(ZONE)
    assert made.snapshot_id not in block_snapshot_ids(ZONE)
    armed = cloud.process.operator("GET", "faults")["faults"]
    assert [f["operation"] for f in armed] == [DELETE_INSTANCE_SNAPSHOT]


def test_the_image_tells_which_of_its_recorded_snapshots_are_block_ones(
    cloud: Cloud, qcow2_artefact: Path
) -> None:
    # The caller recorded the snapshot id without its kind: the image's root volume says it.
    made = sbs_image(ZONE, qcow2_artefact, 42)
    removal = deletion.ImageRemoval(ZONE, made.image_id, [made.snapshot_id])
    removal.run(timeout=10)
    assert removal.deleted == [f"image {made.image_id}", f"block snapshot {made.snapshot_id}"]
    assert made.snapshot_id not in block_snapshot_ids(ZONE)


def test_a_recorded_id_the_instance_api_does_not_know_is_deleted_as_a_block_snapshot(
    cloud: Cloud, qcow2_artefact: Path
) -> None:
    # The image went earlier (so nothing says what the recorded snapshot is): the Instance
    # API answers 404 for a Block snapshot, which must not count as "already gone".
    made = sbs_image(ZONE, qcow2_artefact, 43)
    clients.instance_api().delete_image(zone=ZONE, image_id=made.image_id)

    removal = deletion.ImageRemoval(ZONE, made.image_id, [made.snapshot_id])
    removal.run(timeout=10)

    assert removal.already_gone == [f"image {made.image_id}"]
    assert removal.deleted == [f"block snapshot {made.snapshot_id}"]
    assert made.snapshot_id not in block_snapshot_ids(ZONE)

    # Again: now it is gone from both APIs, and says so.
    again = deletion.ImageRemoval(ZONE, made.image_id, [made.snapshot_id])
    again.run(timeout=10)
    assert again.deleted == []
    assert again.already_gone == [f"image {made.image_id}", f"snapshot {made.snapshot_id}"]


def test_a_block_snapshot_held_by_another_image_times_out_with_what_holds_it(
    cloud: Cloud, qcow2_artefact: Path
) -> None:
    made = sbs_image(ZONE, qcow2_artefact, 44)
    other = sbs_image(ZONE, qcow2_artefact, 44, name="other", snapshot_id=made.snapshot_id)

    removal = deletion.ImageRemoval(ZONE, made.image_id, block_snapshot_ids=[made.snapshot_id])
    with pytest.raises(CloudTimeout) as stuck:
        removal.run(timeout=0.5)

    message = str(stuck.value)
    assert f"delete block snapshot {made.snapshot_id} in {ZONE}: still in_use" in message
    assert f"used by instance_image {other.image_id}" in message
    assert "after 0.5 s (the API: precondition is not respected" in message
    assert message.count(f"delete block snapshot {made.snapshot_id}") == 1
    assert stuck.value.status == 412  # that snapshot is stuck, not its zone's API
    assert removal.deleted == [f"image {made.image_id}"]
    assert block_snapshot_status(ZONE, made.snapshot_id) == "in_use"

    # Once the other image is gone, the same removal finishes.
    clients.instance_api().delete_image(zone=ZONE, image_id=other.image_id)
    again = deletion.ImageRemoval(ZONE, made.image_id, block_snapshot_ids=[made.snapshot_id])
    again.run(timeout=5)
    assert again.deleted == [f"block snapshot {made.snapshot_id}"]


def test_a_block_snapshot_still_creating_is_waited_for_then_times_out(
    cloud: Cloud, qcow2_artefact: Path
) -> None:
    snapshot = import_block_snapshot(ZONE, qcow2_artefact, 45, wait=False)
    assert str(snapshot.status) == "creating"
    # localcloud settles a transition by its own clock: set back a day, the import does not
    # finish while the deletion waits.
    cloud.process.operator("PUT", "clock", offset_seconds=-86400)
    try:
        with pytest.raises(CloudTimeout) as stuck:
            deletion.delete_block_snapshot(ZONE, snapshot.id, timeout=0.5)
        assert "still creating after 0.5 s (the API: " in str(stuck.value)
        assert stuck.value.status == 409
    finally:
        cloud.process.operator("PUT", "clock", offset_seconds=0)
    # The import ends (by localcloud's clock): the deletion then goes through.
    assert deletion.delete_block_snapshot(ZONE, snapshot.id, timeout=5) is True
    assert snapshot.id not in block_snapshot_ids(ZONE)
    assert deletion.delete_block_snapshot(ZONE, snapshot.id, timeout=5) is False


def test_a_block_api_answering_5xx_is_retried_then_a_clear_error(
    cloud: Cloud, qcow2_artefact: Path, settings
) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 2
    snapshot = import_block_snapshot(ZONE, qcow2_artefact, 46)
    cloud.fault(operation=DELETE_BLOCK_SNAPSHOT, count=1, status=503)
    assert deletion.delete_block_snapshot(ZONE, snapshot.id, timeout=5) is True  # retried

    snapshot = import_block_snapshot(ZONE, qcow2_artefact, 46, name="second")
    cloud.fault(operation=DELETE_BLOCK_SNAPSHOT, count=2, status=500, message="storage offline")
    with pytest.raises(CloudError) as failed:
        deletion.delete_block_snapshot(ZONE, snapshot.id, timeout=5)
    assert "storage offline" in str(failed.value)
    assert failed.value.status == 500
    assert snapshot.id in block_snapshot_ids(ZONE)


def test_find_block_snapshots_lists_one_builds_block_snapshots_of_a_zone(
    cloud: Cloud, qcow2_artefact: Path
) -> None:
    mine = import_block_snapshot(ZONE, qcow2_artefact, 47, wait=False)
    import_block_snapshot(ZONE, qcow2_artefact, 48, wait=False)
    import_block_snapshot("fr-par-2", qcow2_artefact, 47, wait=False)
    block = clients.block_api()
    assert [s.id for s in tags.find_block_snapshots(block, ZONE, 47)] == [mine.id]
    assert tags.find_block_snapshots(block, "nl-ams-1", 47) == []
