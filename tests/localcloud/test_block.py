"""Block Storage v1 through the real SDK against a real localcloud process: volumes, snapshots,
QCOW2 import from (moto) Object Storage and export back, and the attach hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from scaleway import Client, ScalewayException
from scaleway.block.v1 import (
    BlockV1API,
    CreateVolumeRequestFromEmpty,
    CreateVolumeRequestFromSnapshot,
)

from localcloud.app import LocalCloud
from localcloud.http import ApiError, Request

GB = 1000**3
GIB = 1024**3


@pytest.fixture
def block(client: Client) -> BlockV1API:
    return BlockV1API(client)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The few QCOW2 files these tests need (the conftest's set also builds a LUKS-encrypted
    one, whose key derivation costs tens of seconds)."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    root = tmp_path_factory.mktemp("block-qcow2")
    made = {}
    for name, args in {
        "valid": ["1G"],
        "small": ["64M"],
        "zstd": ["-o", "compression_type=zstd", "1G"],
    }.items():
        made[name] = root / f"{name}.qcow2"
        options, size = args[:-1], args[-1]
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", *options, str(made[name]), size],
            check=True,
        )
    made["raw"] = root / "raw.qcow2"
    made["raw"].write_bytes(b"\0" * 4096)
    return made


def new_bucket(s3) -> str:
    """A fresh bucket (moto's objects outlive localcloud's reset between tests)."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "fr-par"})
    return name


def test_volume_lifecycle(block: BlockV1API) -> None:
    volume = block.create_volume(
        name="data", perf_iops=15000, from_empty=CreateVolumeRequestFromEmpty(size=20 * GB)
    )
    assert volume.status == "creating" and volume.type_ == "sbs_15k"
    assert volume.specs.perf_iops == 15000 and volume.specs.class_ == "sbs"
    volume = block.wait_for_volume(volume_id=volume.id)
    assert volume.status == "available" and volume.references == []

    block.create_volume(
        name="other", tags=["keep"], from_empty=CreateVolumeRequestFromEmpty(size=GB)
    )
    listed = block.list_volumes(include_deleted=False, name="data")
    assert [v.id for v in listed.volumes] == [volume.id] and listed.total_count == 1
    assert block.list_volumes(include_deleted=False, tags=["keep"]).volumes[0].name == "other"
    assert block.list_volumes(include_deleted=False, page_size=1, page=2).total_count == 2
    assert len(block.list_volumes_all(include_deleted=False, page_size=1)) == 2

    # A new performance class is applied by an `updating` transition, as recorded on
    # Scaleway: the answer still shows the old type.
    updated = block.update_volume(volume_id=volume.id, name="data2", size=30 * GB, perf_iops=5000)
    assert (updated.name, updated.size, updated.type_) == ("data2", 30 * GB, "sbs_15k")
    assert updated.status == "updating"
    updated = block.wait_for_volume(volume_id=volume.id)
    assert (updated.status, updated.type_, updated.specs.perf_iops) == ("available", "sbs_5k", 5000)

    snapshot = block.create_snapshot(volume_id=volume.id, public=False, name="snap")
    assert snapshot.status == "creating" and snapshot.parent_volume.id == volume.id
    snapshot = block.wait_for_snapshot(snapshot_id=snapshot.id)
    assert snapshot.status == "available" and snapshot.size == 30 * GB
    assert block.list_snapshots(include_deleted=False, volume_id=volume.id).total_count == 1

    restored = block.create_volume(
        name="restored",
        from_snapshot=CreateVolumeRequestFromSnapshot(snapshot_id=snapshot.id),
    )
    assert restored.parent_snapshot_id == snapshot.id and restored.size == 30 * GB

    block.delete_volume(volume_id=volume.id)
    with pytest.raises(ScalewayException) as caught:
        block.get_volume(volume_id=volume.id)
    assert caught.value.status_code == 404
    assert caught.value.response.json()["resource"] == "volume"
    block.delete_snapshot(snapshot_id=snapshot.id)


def test_import_export_through_object_storage(block: BlockV1API, s3, images) -> None:
    bucket = new_bucket(s3)
    s3.upload_file(str(images["valid"]), bucket, "debian.qcow2")

    snapshot = block.import_snapshot_from_object_storage(
        bucket=bucket, key="debian.qcow2", name="debian"
    )
    assert snapshot.status == "creating" and snapshot.class_ == "sbs"
    snapshot = block.wait_for_snapshot(snapshot_id=snapshot.id)
    assert snapshot.status == "available"
    assert snapshot.size == GIB  # the QCOW2's virtual size when no size is given
    assert snapshot.parent_volume is None

    exported = block.export_snapshot_to_object_storage(
        snapshot_id=snapshot.id, bucket=bucket, key="exported.qcow2"
    )
    assert exported.status == "exporting"
    assert block.wait_for_snapshot(snapshot_id=snapshot.id).status == "available"
    body = s3.get_object(Bucket=bucket, Key="exported.qcow2")["Body"].read()
    assert body == images["valid"].read_bytes()

    # A volume made from the imported snapshot is bootable data for the Instance API.
    volume = block.create_volume(
        name="boot", from_snapshot=CreateVolumeRequestFromSnapshot(snapshot_id=snapshot.id)
    )
    assert volume.size == GIB


@pytest.mark.parametrize(
    ("kind", "key", "message"),
    [
        ("raw", "raw.qcow2", "The provided file is not a valid QCOW2 file"),
        ("zstd", "zstd.qcow2", "The provided QCOW2 has an unsupported compression type"),
        ("small", "small.qcow2", "The volume size must be between 1 GB and 1 TB"),
        ("valid", "valid.img", "The object must have a .qcow or .qcow2 extension"),
        (None, "missing.qcow2", "The object missing.qcow2 was not found in bucket {bucket}"),
    ],
)
def test_refused_imports(block: BlockV1API, s3, images, kind, key, message) -> None:
    bucket = new_bucket(s3)
    if kind:
        s3.upload_file(str(images[kind]), bucket, key)
    with pytest.raises(ScalewayException) as caught:
        block.import_snapshot_from_object_storage(bucket=bucket, key=key, name="bad")
    assert caught.value.status_code == 400
    assert caught.value.response.json() == {
        "type": "invalid_request_error",
        "message": message.format(bucket=bucket),
    }
    assert block.list_snapshots(include_deleted=False).total_count == 0


# --- the attach hook, in process ---------------------------------------------------------------


def test_attach_hook_and_delete_refused_while_in_use(tmp_path: Path) -> None:
    cloud = LocalCloud(tmp_path / "state")
    cloud.transition_seconds = 0
    token = {"x-auth-token": "11111111-1111-1111-1111-111111111111"}

    def call(method: str, path: str, body: dict | None = None):
        request = Request.parse(method, path, token, json.dumps(body or {}).encode())
        return cloud.handle(request)

    base = "/block/v1/zones/fr-par-1/volumes"
    volume = call("POST", base, {"name": "v", "from_empty": {"size": GB}}).body
    attached = cloud.hooks["block_volume_attached"]
    assert attached is cloud.block_volume_attached

    state = attached("fr-par-1", volume["id"], "server-1", True)
    assert state["status"] == "in_use"
    [reference] = state["references"]
    assert reference["product_resource_type"] == "instance_server"
    assert reference["product_resource_id"] == "server-1"
    assert (reference["type"], reference["status"]) == ("exclusive", "attached")
    listed = call("GET", f"{base}?include_deleted=false&product_resource_id=server-1").body
    assert [v["id"] for v in listed["volumes"]] == [volume["id"]]

    refused = call("DELETE", f"{base}/{volume['id']}")
    assert refused.status == 412 and refused.body["type"] == "precondition_failed"
    with pytest.raises(ApiError) as caught:
        attached("fr-par-1", volume["id"], "server-2", True)
    assert caught.value.status == 412
    with pytest.raises(ApiError) as caught:
        attached("nl-ams-1", volume["id"], "server-1", True)
    assert caught.value.status == 404

    # A hot snapshot is allowed while in use.
    snap = call("POST", "/block/v1/zones/fr-par-1/snapshots", {"volume_id": volume["id"]})
    assert snap.status == 200 and snap.body["parent_volume"]["status"] == "in_use"

    freed = attached("fr-par-1", volume["id"], "server-1", False)
    assert freed["status"] == "available" and freed["references"] == []
    assert freed["last_detached_at"] is not None
    assert cloud.hooks["block_volume_lookup"]("fr-par-1", volume["id"])["blob_path"] is None
    assert call("DELETE", f"{base}/{volume['id']}").status == 204
