"""What every Instance call shares: authentication, JSON errors, zones, paging, faults,
the operator's clock, state surviving a restart, and the OpenAPI contract."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from scaleway import Client, ScalewayException
from scaleway.instance.v1.custom_api import InstanceUtilsV1API

from localcloud.app import LocalCloud, make_server
from tests.localcloud import contract
from tests.localcloud.conftest import PROJECT, SECRET, make_bucket, wait_for

ZONE_URL = "/instance/v1/zones/fr-par-1"


def test_401_on_missing_or_malformed_token(localcloud) -> None:
    missing = requests.get(f"{localcloud.url}{ZONE_URL}/servers", timeout=5)
    assert missing.status_code == 401
    assert missing.json() == {
        "type": "denied_authentication",
        "message": "authentication is denied",
        "method": "api_key",
        "reason": "not_found",
    }
    malformed = requests.get(
        f"{localcloud.url}{ZONE_URL}/images", headers={"X-Auth-Token": "nope"}, timeout=5
    )
    assert malformed.status_code == 401
    assert malformed.json()["reason"] == "invalid_argument"


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        (f"{ZONE_URL}/servers/5f3c7a3e-0000-4000-8000-000000000000", 404, "instance_server"),
        (f"{ZONE_URL}/images/5f3c7a3e-0000-4000-8000-000000000000", 404, "instance_image"),
        (f"{ZONE_URL}/snapshots/x", 404, "instance_snapshot"),
        (f"{ZONE_URL}/security_groups/x", 404, "instance_security_group"),
        (f"{ZONE_URL}/ips/x", 404, "instance_ip"),
        ("/instance/v1/zones/fr-par-9/servers", 404, None),
        ("/instance/v1/zones/nowhere/servers", 400, None),
        (f"{ZONE_URL}/no-such-thing", 404, None),
    ],
)
def test_json_errors(localcloud, path: str, status: int, expected: str | None) -> None:
    answer = requests.get(f"{localcloud.url}{path}", headers={"X-Auth-Token": SECRET}, timeout=5)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert {"type", "message"} <= set(body)
    if expected:
        assert body == {
            "type": "not_found",
            "message": "resource is not found",
            "resource": expected,
            "resource_id": path.rsplit("/", 1)[-1],
        }


def test_zones_are_separate_and_all_eight_sdk_zones_answer(api) -> None:
    for zone in (
        "fr-par-1",
        "fr-par-2",
        "fr-par-3",
        "nl-ams-1",
        "nl-ams-2",
        "nl-ams-3",
        "pl-waw-1",
        "pl-waw-2",
        "pl-waw-3",
    ):
        assert api.list_servers(zone=zone).servers == []
    group = api.create_security_group(description="d", stateful=True, zone="nl-ams-2")
    assert group.security_group.zone == "nl-ams-2"
    with pytest.raises(ScalewayException) as other_zone:
        api.get_security_group(security_group_id=group.security_group.id, zone="nl-ams-1")
    assert other_zone.value.status_code == 404


def test_list_all_pages_until_an_empty_page(api) -> None:
    made = {
        api.create_security_group(description="d", stateful=True, name=f"sg-{i}").security_group.id
        for i in range(60)
    }
    everything = api.list_security_groups_all(per_page=25)
    assert {g.id for g in everything} == made
    page = api.list_security_groups(per_page=25, page=3)
    assert (len(page.security_groups), page.total_count) == (10, "60")
    assert api.list_security_groups(per_page=25, page=4).security_groups == []
    assert api.list_security_groups(organization=PROJECT).total_count == "60"


def test_fault_injection(localcloud, api, s3, qcow2_files) -> None:
    make_bucket(s3, "faults")
    s3.upload_file(str(qcow2_files["valid"]), "faults", "f.qcow2")
    operation = "POST /instance/v1/zones/{zone}/snapshots"
    localcloud.operator("POST", "faults", operation=operation, count=1, status=503)
    with pytest.raises(ScalewayException) as unavailable:
        api.create_snapshot(bucket="faults", key="f.qcow2", volume_type="l_ssd")
    assert unavailable.value.status_code == 503
    localcloud.operator("POST", "faults", operation=operation, status=429, retry_after=7)
    with pytest.raises(ScalewayException) as throttled:
        api.create_snapshot(bucket="faults", key="f.qcow2", volume_type="l_ssd")
    assert throttled.value.status_code == 429
    assert throttled.value.response.headers["Retry-After"] == "7"
    # Consumed: the next call goes through.
    assert api.create_snapshot(bucket="faults", key="f.qcow2", volume_type="l_ssd").snapshot.id


def test_state_survives_a_restart(localcloud, api, s3, qcow2_files) -> None:
    make_bucket(s3, "keep")
    s3.upload_file(str(qcow2_files["valid"]), "keep", "keep.qcow2")
    snapshot = api.create_snapshot(bucket="keep", key="keep.qcow2", volume_type="l_ssd").snapshot
    wait_for(
        lambda: api.get_snapshot(snapshot_id=snapshot.id).snapshot, lambda s: s.state == "available"
    )
    image = api.create_image(root_volume=snapshot.id, arch="x86_64", name="kept").image
    blob = localcloud.state_dir / "blobs" / f"{snapshot.id}.qcow2"
    assert blob.read_bytes() == qcow2_files["valid"].read_bytes()

    localcloud.restart()  # moto's objects are gone; localcloud's copy is not

    assert api.get_image(image_id=image.id).image.root_volume.id == snapshot.id
    assert api.get_snapshot(snapshot_id=snapshot.id).snapshot.state == "available"
    assert blob.is_file()
    server = api.create_server(commercial_type="DEV1-S", image=image.id).server
    assert server.volumes["0"].size == 1024**3


# --- the clock: an in-process localcloud whose transitions take a minute -------------------


@pytest.fixture
def slow_cloud(tmp_path: Path, contract_checked: list[str]) -> Iterator[tuple[str, Client]]:
    """localcloud in this process, on a thread, with 60 s transitions (no S3 needed)."""
    cloud = LocalCloud(tmp_path / "state")
    cloud.transition_seconds = 60.0
    server = make_server(cloud, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = Client(
        access_key="SCWXXXXXXXXXXXXXXXXX",
        secret_key=SECRET,
        api_url=url,
        default_project_id=PROJECT,
        default_zone="fr-par-1",
        default_region="fr-par",
    )
    yield url, client
    server.shutdown()
    server.server_close()
    thread.join()


def test_clock_offset_moves_transitions_forward(slow_cloud) -> None:
    from scaleway.instance.v1 import ServerAction, VolumeServerTemplate

    url, client = slow_cloud
    api = InstanceUtilsV1API(client)
    server = api.create_server(
        commercial_type="DEV1-S",
        volumes={"0": VolumeServerTemplate(volume_type="l_ssd", size=20 * 1000**3)},
    ).server
    api.server_action(server_id=server.id, action=ServerAction.POWERON)
    starting = api.get_server(server_id=server.id).server
    assert (starting.state, starting.state_detail) == ("starting", "allocating node")

    requests.put(f"{url}/localcloud/v1/clock", json={"offset_seconds": 61}, timeout=5)
    assert api.get_server(server_id=server.id).server.state_detail == "provisioning node"
    requests.put(f"{url}/localcloud/v1/clock", json={"offset_seconds": 121}, timeout=5)
    # Lists apply due transitions too.
    listed = api.list_servers().servers[0]
    assert (listed.state, listed.state_detail) == ("running", "booting kernel")


# --- the contract, with plain requests ----------------------------------------------------


@pytest.mark.skipif(not contract.available(), reason=contract.SKIP_REASON)
def test_contract_with_plain_requests(localcloud) -> None:
    """Calls the SDK does not make in the other tests, checked against the spec."""
    session = requests.Session()
    session.headers["X-Auth-Token"] = SECRET
    base = f"{localcloud.url}{ZONE_URL}"
    seen: list[str] = []

    def call(method: str, path: str, **kwargs: object) -> requests.Response:
        answer = session.request(method, base + path, timeout=5, **kwargs)
        if answer.headers.get("content-type", "").startswith("application/json"):
            seen.extend(contract.problems(method, answer.url, answer.status_code, answer.json()))
        return answer

    server = call(
        "POST",
        "/servers",
        json={
            "commercial_type": "DEV1-S",
            "project": PROJECT,
            "volumes": {"0": {"size": 20 * 1000**3, "volume_type": "l_ssd"}},
        },
    ).json()["server"]
    assert (
        call("POST", f"/servers/{server['id']}/action", json={"action": "poweron"}).status_code
        == 202
    )
    call("GET", f"/servers/{server['id']}/action")
    call("GET", f"/servers/{server['id']}/compatible-types")
    call("GET", f"/servers/{server['id']}/user_data")
    call("GET", "/products/servers")
    call("GET", "/volumes")
    call("GET", "/security_groups/default/rules")
    group = call(
        "POST", "/security_groups", json={"description": "x", "stateful": True, "project": PROJECT}
    ).json()["security_group"]
    rule = call(
        "POST",
        f"/security_groups/{group['id']}/rules",
        json={
            "protocol": "udp",
            "direction": "inbound",
            "action": "accept",
            "ip_range": "10.0.0.0/8",
            "dest_port_from": 53,
        },
    ).json()["rule"]
    assert rule["protocol"] == "UDP"
    call("GET", f"/security_groups/{group['id']}/rules/{rule['id']}")
    ip = call("POST", "/ips", json={"type": "routed_ipv4", "project": PROJECT}).json()["ip"]
    call("PATCH", f"/ips/{ip['id']}", json={"server": server["id"]})
    call("PATCH", f"/ips/{ip['id']}", json={"server": None})
    assert call("DELETE", f"/ips/{ip['id']}").status_code == 204
    assert not seen, "\n".join(seen)
