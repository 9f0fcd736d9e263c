"""Servers through the real SDK: create, every action with the real state strings, backup,
delete, update, user data, volumes, types and list filters."""

from __future__ import annotations

import re

import pytest
import requests
from scaleway import ScalewayException
from scaleway.block.v1 import BlockV1API, CreateVolumeRequestFromEmpty
from scaleway.instance.v1 import BootType, SecurityGroupTemplate, ServerAction

from tests.localcloud.conftest import PROJECT, SECRET, make_bucket, wait_for


@pytest.fixture
def image(api, s3, qcow2_files):
    """An instance image in fr-par-1 made from an imported QCOW2."""
    make_bucket(s3, "images")
    s3.upload_file(str(qcow2_files["valid"]), "images", "base.qcow2")
    snapshot = api.create_snapshot(bucket="images", key="base.qcow2", volume_type="l_ssd").snapshot
    wait_for(
        lambda: api.get_snapshot(snapshot_id=snapshot.id).snapshot, lambda s: s.state == "available"
    )
    return api.create_image(root_volume=snapshot.id, arch="x86_64", name="base").image


def _server(api, image, **extra):
    extra.setdefault("dynamic_ip_required", True)
    return api.create_server(commercial_type="DEV1-S", name="web-1", image=image.id, **extra).server


def _wait_state(api, server_id: str, state: str):
    return wait_for(lambda: api.get_server(server_id=server_id).server, lambda s: s.state == state)


def _act(api, server_id: str, action: ServerAction, **extra):
    return api.server_action(server_id=server_id, action=action, **extra).task


def test_lifecycle_through_every_action(api, image) -> None:
    server = _server(api, image)
    assert (server.state, server.state_detail) == ("stopped", "")
    assert server.allowed_actions == ["poweron", "backup"]
    assert server.image.id == image.id
    root = server.volumes["0"]
    assert (root.volume_type, root.boot, root.size) == ("l_ssd", True, 1024**3)
    assert re.fullmatch(r"127\.\d+\.\d+\.\d+", server.public_ips[0].address)
    assert server.public_ip.address == server.public_ips[0].address
    assert server.security_group.name == "Default security group"
    assert server.project == PROJECT
    assert server.dns == f"{server.id}.pub.instances.scw.cloud"

    task = _act(api, server.id, ServerAction.POWERON)
    assert (task.status, task.href_result) == ("pending", f"/servers/{server.id}")
    starting = api.get_server(server_id=server.id).server
    assert starting.state in ("starting", "running")
    if starting.state == "starting":
        assert starting.state_detail in ("allocating node", "provisioning node")
        assert starting.allowed_actions == ["stop_in_place", "backup"]
    running = _wait_state(api, server.id, "running")
    assert running.state_detail == "booting kernel"
    assert running.allowed_actions == ["poweroff", "terminate", "reboot", "stop_in_place", "backup"]

    with pytest.raises(ScalewayException) as refused:
        _act(api, server.id, ServerAction.POWERON)
    assert refused.value.status_code == 400
    assert "poweron is not allowed while the server is running" in str(refused.value)
    with pytest.raises(ScalewayException) as running_delete:
        api.delete_server(server_id=server.id)
    assert running_delete.value.response.json() == {
        "type": "invalid_request_error",
        "message": "instance must be stopped",
    }

    _act(api, server.id, ServerAction.REBOOT)
    rebooting = api.get_server(server_id=server.id).server
    assert rebooting.state_detail in ("rebooting", "booting kernel")
    _wait_state(api, server.id, "running")

    _act(api, server.id, ServerAction.STOP_IN_PLACE)
    in_place = _wait_state(api, server.id, "stopped in place")  # with spaces, as on Scaleway
    assert in_place.state_detail == "stopped in place"
    assert in_place.allowed_actions == ["poweron", "poweroff", "terminate", "reboot", "backup"]
    assert [s.id for s in api.list_servers(state="stopped in place").servers] == [server.id]

    _act(api, server.id, ServerAction.POWERON)
    _wait_state(api, server.id, "running")
    _act(api, server.id, ServerAction.POWEROFF)
    assert api.get_server(server_id=server.id).server.state_detail in ("stopping", "")
    stopped = _wait_state(api, server.id, "stopped")
    assert stopped.allowed_actions == ["poweron", "backup"]

    _act(api, server.id, ServerAction.POWERON)
    _wait_state(api, server.id, "running")
    volume_id = root.id
    _act(api, server.id, ServerAction.TERMINATE)
    wait_for(lambda: [s.id for s in api.list_servers().servers], lambda ids: server.id not in ids)
    with pytest.raises(ScalewayException) as gone:
        api.get_server(server_id=server.id)
    assert gone.value.status_code == 404
    assert gone.value.response.json()["resource"] == "instance_server"
    # terminate deletes local volumes and releases the dynamic IP
    assert api.list_volumes().volumes == []
    assert volume_id not in [v.id for v in api.list_volumes().volumes]
    assert api.list_ips().ips == []


def test_backup_makes_an_image_and_snapshots(api, image) -> None:
    server = _server(api, image, dynamic_ip_required=False)
    assert server.public_ips == []
    task = _act(api, server.id, ServerAction.BACKUP)
    image_id = task.href_result.removeprefix("/images/")
    backup = api.get_image(image_id=image_id).image
    assert re.fullmatch(r"image_web-1_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}", backup.name)
    assert backup.from_server == server.id
    assert backup.root_volume.name == f"{backup.name}_snap_0"
    backup = wait_for(
        lambda: api.get_image(image_id=image_id).image, lambda i: i.state != "creating"
    )
    assert backup.state == "available"
    snapshot = api.get_snapshot(snapshot_id=backup.root_volume.id).snapshot
    assert snapshot.state == "available"
    assert snapshot.base_volume.id == server.volumes["0"].id
    named = _act(api, server.id, ServerAction.BACKUP, name="nightly")
    assert api.get_image(image_id=named.href_result.split("/")[-1]).image.name == "nightly"


def test_delete_stopped_server_keeps_local_volumes(api, image) -> None:
    server = _server(api, image)
    api.delete_server(server_id=server.id)
    volume = api.get_volume(volume_id=server.volumes["0"].id).volume
    assert volume.server is None
    api.delete_volume(volume_id=volume.id)
    assert api.list_servers().servers == []


def test_snapshots_hot_and_cold(api, image) -> None:
    server = _server(api, image)
    volume_id = server.volumes["0"].id
    cold = api.create_snapshot(volume_id=volume_id, name="cold").snapshot
    assert cold.state == "snapshotting"
    _act(api, server.id, ServerAction.POWERON)
    _wait_state(api, server.id, "running")
    hot = api.create_snapshot(volume_id=volume_id, name="hot").snapshot
    for snap in (cold, hot):
        done = wait_for(
            lambda s=snap: api.get_snapshot(snapshot_id=s.id).snapshot,
            lambda s: s.state == "available",
        )
        assert done.base_volume.id == volume_id
    assert {s.id for s in api.list_snapshots(base_volume_id=volume_id).snapshots} == {
        cold.id,
        hot.id,
    }


def test_update_rescue_security_group_and_protection(api, image) -> None:
    server = _server(api, image)
    group = api.create_security_group(description="web", stateful=True, name="web").security_group
    updated = api._update_server(
        server_id=server.id,
        name="web-2",
        tags=["a", "b"],
        boot_type=BootType.RESCUE,
        security_group=SecurityGroupTemplate(id=group.id, name=group.name),
        protected=True,
    ).server
    assert (updated.name, updated.tags, updated.boot_type) == ("web-2", ["a", "b"], "rescue")
    assert (updated.security_group.id, updated.protected) == (group.id, True)
    assert api.get_security_group(security_group_id=group.id).security_group.servers[0].id == (
        server.id
    )
    with pytest.raises(ScalewayException) as protected:
        api.delete_server(server_id=server.id)
    assert "protected" in protected.value.response.json()["message"]
    assert [s.id for s in api.list_servers(tags=["a", "b"]).servers] == [server.id]
    assert api.list_servers(tags=["c"]).servers == []
    assert [s.id for s in api.list_servers(name="web-2").servers] == [server.id]
    assert api.list_servers(project="22222222-2222-2222-2222-222222222222").servers == []


def test_user_data_round_trip(api, image) -> None:
    server = _server(api, image)
    cloud_init = b"#cloud-config\npackages: [nginx]\n"
    api.set_server_user_data(server_id=server.id, key="cloud-init", content=cloud_init)
    api.set_server_user_data(server_id=server.id, key="first key", content=b"\x00\xffbin")
    assert api.list_server_user_data(server_id=server.id).user_data == ["cloud-init", "first key"]
    got = api.get_server_user_data(server_id=server.id, key="cloud-init")
    assert (got.status_code, got.content) == (200, cloud_init)
    assert got.headers["content-type"].startswith("text/plain")
    assert api.get_server_user_data(server_id=server.id, key="first key").content == b"\x00\xffbin"
    assert api.get_all_server_user_data(server_id=server.id).user_data["cloud-init"] == cloud_init
    api.delete_server_user_data(server_id=server.id, key="first key")
    assert api.list_server_user_data(server_id=server.id).user_data == ["cloud-init"]
    with pytest.raises(ScalewayException) as missing:
        api.get_server_user_data(server_id=server.id, key="first key")
    assert missing.value.status_code == 404


def test_attach_and_detach_block_volume(api, client, image) -> None:
    block = BlockV1API(client)
    volume = block.create_volume(
        name="data", perf_iops=5000, from_empty=CreateVolumeRequestFromEmpty(size=10 * 1000**3)
    )
    block.wait_for_volume(volume_id=volume.id)
    server = _server(api, image)
    attached = api.attach_server_volume(
        server_id=server.id, volume_id=volume.id, volume_type="sbs_volume"
    ).server
    assert attached.volumes["1"].id == volume.id
    assert attached.volumes["1"].volume_type == "sbs_volume"
    assert block.get_volume(volume_id=volume.id).status == "in_use"
    detached = api.detach_server_volume(server_id=server.id, volume_id=volume.id).server
    assert set(detached.volumes) == {"0"}
    assert block.get_volume(volume_id=volume.id).status == "available"


def test_types_and_compatible_types(localcloud, api, image) -> None:
    types = api.list_servers_types().servers
    assert {"DEV1-S", "GP1-XS", "PRO2-XXS", "COPARM1-2C-8G"} <= set(types)
    assert types["COPARM1-2C-8G"].arch == "arm64"
    assert types["DEV1-S"].capabilities.boot_types == ["local", "rescue"]
    raw = requests.get(
        f"{localcloud.url}/instance/v1/zones/fr-par-1/products/servers",
        headers={"X-Auth-Token": SECRET},
        timeout=5,
    ).json()
    assert raw["servers"]["DEV1-S"]["capabilities"]["hot_snapshots_local_volume"] is True
    server = _server(api, image)
    compatible = api.get_server_compatible_types(server_id=server.id).compatible_types
    assert "DEV1-M" in compatible and "COPARM1-2C-8G" not in compatible
    with pytest.raises(ScalewayException) as wrong_arch:
        api.create_server(commercial_type="COPARM1-2C-8G", image=image.id)
    assert "not compatible" in wrong_arch.value.response.json()["message"]


def test_unknown_images_and_types(api) -> None:
    with pytest.raises(ScalewayException) as unknown:
        api.create_server(commercial_type="DEV1-S", image="5f3c7a3e-0000-4000-8000-000000000000")
    assert unknown.value.status_code == 404
    assert unknown.value.response.json()["resource"] == "instance_image"
    with pytest.raises(ScalewayException) as label:
        api.create_server(commercial_type="DEV1-S", image="no_such_label")
    assert label.value.status_code == 404
    with pytest.raises(ScalewayException) as bad_type:
        api.create_server(commercial_type="NOPE-1", image="no_such_label")
    assert bad_type.value.status_code == 400


def test_actions_are_in_the_audit_trail_but_not_in_the_inventory(api, image, localcloud) -> None:
    """Audit events record calls; the inventory lists resources, which a test run or a usage
    source counts (a run that cleaned up leaves no new resource, whatever events it caused)."""
    server = _server(api, image)
    _act(api, server.id, ServerAction.POWERON)
    _wait_state(api, server.id, "running")
    answer = requests.get(
        f"{localcloud.url}/audit-trail/v1alpha1/regions/fr-par/events",
        params={"resource_id": server.id},
        headers={"X-Auth-Token": SECRET},
        timeout=10,
    )
    assert answer.ok and answer.json()["events"], answer.text
    inventory = localcloud.operator("GET", "inventory")
    assert "audit_event" not in inventory
    assert server.id in {s["id"] for s in inventory["instance_server"]}
