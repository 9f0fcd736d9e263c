"""Block Storage (SBS) images in localcloud, made as the publish makes them: the QCOW2
uploaded to the region's bucket (moto, through cloud.objectstorage), imported as a Block
snapshot through the Block API, and an Instance image whose root volume is that snapshot.
All through the real SDK, tagged as a build's resources are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, objectstorage, tags, waiters


@dataclass
class SbsImage:
    zone: str
    image_id: str
    snapshot_id: str


def upload(artefact: Path, region: str, build_id: int) -> tuple[str, str]:
    """The artefact in the region's bucket under the build's prefix; (bucket, key)."""
    s3 = clients.s3_client(region)
    bucket = settings.PUBLISH_BUCKET
    objectstorage.ensure_bucket(s3, bucket, region)
    key = f"{tags.object_prefix(build_id)}disk.qcow2"
    objectstorage.upload(
        s3,
        bucket,
        key,
        artefact,
        metadata={},
        on_progress=lambda sent: None,
        cancelled=lambda: False,
    )
    return bucket, key


def import_block_snapshot(
    zone: str, artefact: Path, build_id: int, *, name: str = "sbs", wait: bool = True
) -> Any:
    """A Block snapshot imported from the artefact (available when `wait`)."""
    bucket, key = upload(artefact, zone.rsplit("-", 1)[0], build_id)
    block = clients.block_api()
    snapshot = block.import_snapshot_from_object_storage(
        zone=zone, bucket=bucket, key=key, name=name, tags=tags.tags_for(build_id)
    )
    if wait:
        snapshot = waiters.wait_for_block_snapshot(block, zone, snapshot.id, timeout=20)
    return snapshot


def sbs_image(
    zone: str, artefact: Path, build_id: int, *, name: str = "sbs", snapshot_id: str = ""
) -> SbsImage:
    """An available Instance image over a Block snapshot (imported unless `snapshot_id`)."""
    if not snapshot_id:
        snapshot_id = import_block_snapshot(zone, artefact, build_id, name=name).id
    api = clients.instance_api()
    image = api.create_image(
        zone=zone,
        root_volume=snapshot_id,
        arch="x86_64",
        name=name,
        tags=tags.tags_for(build_id),
    ).image
    assert str(image.root_volume.volume_type) == "sbs_snapshot"
    waiters.wait_for_image(api, zone, image.id, timeout=20)
    return SbsImage(zone, image.id, snapshot_id)


def record(version: ImageVersion, made: SbsImage) -> LocalImage:
    """The LocalImage the publish records for an SBS image."""
    zone, _ = Zone.objects.get_or_create(code=made.zone, defaults={"enabled": True})
    return LocalImage.objects.create(
        version=version,
        zone=zone,
        storage_type=StorageType.SBS,
        provider_image_id=made.image_id,
        snapshot_id=made.snapshot_id,
        state=LocalImageState.AVAILABLE,
    )


def instance_image_ids(zone: str) -> set[str]:
    """Every Instance image id in a zone (of either storage type)."""
    return {i.id for i in clients.instance_api().list_images_all(zone=zone, public=False)}


def instance_ids(zone: str) -> set[str]:
    """Every Instance image and Instance snapshot id in a zone."""
    snapshots = clients.instance_api().list_snapshots_all(zone=zone)
    return instance_image_ids(zone) | {s.id for s in snapshots}


def block_snapshot_ids(zone: str) -> set[str]:
    """Every Block snapshot id in a zone, listed through the SDK."""
    return {s.id for s in clients.block_api().list_snapshots_all(zone=zone, include_deleted=False)}


def block_snapshot_status(zone: str, snapshot_id: str) -> str:
    return str(clients.block_api().get_snapshot(zone=zone, snapshot_id=snapshot_id).status)
