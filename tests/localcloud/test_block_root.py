"""Servers on Block Storage through the real SDK, as recorded on Scaleway: a server made from
an image whose root is a Block snapshot boots from a Block volume; types without local storage
refuse local volumes; the Instance API makes l_ssd volumes only; the Block API also answers
under v1alpha1."""

from __future__ import annotations

import pytest
import requests
from scaleway import ScalewayException
from scaleway.block.v1 import BlockV1API, CreateVolumeRequestFromEmpty
from scaleway.instance.v1 import ServerAction, VolumeVolumeType

from tests.localcloud.conftest import PROJECT, SECRET, make_bucket, wait_for

GB = 1000**3


@pytest.fixture
def images(api, client, s3, qcow2_files) -> dict:
    """One QCOW2 imported both ways in fr-par-1: an l_ssd image and a Block (SBS) image."""
    make_bucket(s3, "images")
    s3.upload_file(str(qcow2_files["valid"]), "images", "base.qcow2")
    local = api.create_snapshot(bucket="images", key="base.qcow2", volume_type="l_ssd").snapshot
    block = BlockV1API(client)
    imported = block.import_snapshot_from_object_storage(
        bucket="images", key="base.qcow2", name="base", project_id=PROJECT
    )
    wait_for(
        lambda: api.get_snapshot(snapshot_id=local.id).snapshot, lambda s: s.state == "available"
    )
    block.wait_for_snapshot(snapshot_id=imported.id)
    return {
        "local": api.create_image(root_volume=local.id, arch="x86_64", name="local").image,
        "sbs": api.create_image(root_volume=imported.id, arch="x86_64", name="sbs").image,
        "block_snapshot": imported.id,
    }


def test_a_server_from_an_sbs_image_boots_from_a_block_volume(api, client, images) -> None:
    block = BlockV1API(client)
    assert images["sbs"].root_volume.volume_type == "sbs_snapshot"
    assert block.get_snapshot(snapshot_id=images["block_snapshot"]).status == "in_use"

    server = api.create_server(
        commercial_type="PLAY2-PICO", image=images["sbs"].id, dynamic_ip_required=False
    ).server
    root = server.volumes["0"]
    assert root.volume_type == "sbs_volume"
    volume = block.get_volume(volume_id=root.id)
    assert volume.status == "in_use" and volume.parent_snapshot_id == images["block_snapshot"]
    assert [r.product_resource_id for r in volume.references] == [server.id]
    with pytest.raises(ScalewayException) as caught:
        api.get_volume(volume_id=root.id)
    assert caught.value.status_code == 404
    assert root.id not in {v.id for v in api.list_volumes().volumes}

    api.server_action(server_id=server.id, action=ServerAction.POWERON)
    wait_for(lambda: api.get_server(server_id=server.id).server, lambda s: s.state == "running")
    backup = api.server_action(server_id=server.id, action=ServerAction.BACKUP, name="bk").task
    image_id = backup.href_result.rsplit("/", 1)[-1]
    backed = api.get_image(image_id=image_id).image
    assert backed.root_volume.volume_type == "sbs_snapshot"

    # Terminate keeps the Block root: detached, available, for the owner to delete.
    api.server_action(server_id=server.id, action=ServerAction.TERMINATE)
    wait_for(lambda: api.list_servers().servers, lambda servers: not servers)
    kept = block.get_volume(volume_id=root.id)
    assert kept.status == "available" and kept.references == []
    block.delete_volume(volume_id=root.id)


def test_a_type_without_local_storage_refuses_local_volumes(api, images) -> None:
    for type_ in ("PLAY2-PICO", "PRO2-XXS", "POP2-2C-8G"):
        with pytest.raises(ScalewayException) as caught:
            api.create_server(commercial_type=type_, image=images["local"].id)
        assert caught.value.status_code == 400
        assert caught.value.response.json()["type"] == "invalid_request_error"
    assert api.list_servers().servers == []
    assert len(api.list_volumes().volumes) == 0  # nothing left behind
    # The l_ssd image still boots on a type with local storage.
    server = api.create_server(commercial_type="DEV1-S", image=images["local"].id).server
    assert server.volumes["0"].volume_type == "l_ssd"


def test_the_instance_api_makes_local_volumes_only(api, localcloud) -> None:
    empty = api.create_volume(volume_type=VolumeVolumeType.L_SSD, size=20 * GB, name="data")
    assert (empty.volume.volume_type, empty.volume.state) == ("l_ssd", "available")
    assert empty.volume.server is None
    renamed = api.update_volume(volume_id=empty.volume.id, name="data2").volume
    assert renamed.name == "data2"
    answer = requests.post(
        f"{localcloud.url}/instance/v1/zones/fr-par-1/volumes",
        json={"name": "old", "volume_type": "b_ssd", "size": 20 * GB, "project": PROJECT},
        headers={"X-Auth-Token": SECRET},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["type"] == "invalid_arguments"
    api.delete_volume(volume_id=empty.volume.id)


def test_the_block_api_answers_under_v1alpha1(localcloud, client) -> None:
    volume = BlockV1API(client).create_volume(
        name="v", from_empty=CreateVolumeRequestFromEmpty(size=10 * GB), perf_iops=5000
    )
    answer = requests.get(
        f"{localcloud.url}/block/v1alpha1/zones/fr-par-1/volumes/{volume.id}",
        headers={"X-Auth-Token": SECRET},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["id"] == volume.id


def test_an_instance_snapshot_exports_to_object_storage(api, s3, images) -> None:
    local = images["local"].root_volume.id
    make_bucket(s3, "exports")
    task = api.export_snapshot(snapshot_id=local, bucket="exports", key="out.qcow2").task
    assert task.href_result == "https://s3.fr-par.scw.cloud/exports/out.qcow2"
    assert task.description == "fake task"
    assert s3.get_object(Bucket="exports", Key="out.qcow2")["Body"].read(4) == b"QFI\xfb"
    wait_for(lambda: api.get_snapshot(snapshot_id=local).snapshot, lambda s: s.state == "available")
