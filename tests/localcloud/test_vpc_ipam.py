"""VPC v2 and IPAM v1 through the real SDK against a real localcloud process (responses
validated against the VPC OpenAPI contract), plus IPAM's allocation hook in process."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import requests
from scaleway import Client, ScalewayException
from scaleway.block.v1 import BlockV1API, CreateVolumeRequestFromEmpty
from scaleway.ipam.v1 import IpamV1API
from scaleway.vpc.v2 import VpcV2API

from localcloud.app import LocalCloud
from localcloud.http import ApiError, Request
from tests.localcloud.contract import check_component

TOKEN = {"x-auth-token": "11111111-1111-1111-1111-111111111111"}


def check_contract(body: dict, schema: str) -> None:
    check_component("scaleway.vpc.v2.Api.yml", f"scaleway.vpc.v2.{schema}", body)


@pytest.fixture
def vpc(client: Client) -> VpcV2API:
    return VpcV2API(client)


@pytest.fixture
def ipam(client: Client) -> IpamV1API:
    return IpamV1API(client)


def test_private_network_lifecycle(vpc: VpcV2API) -> None:
    pn = vpc.create_private_network(
        default_route_propagation_enabled=True, name="backend", tags=["pipeline"]
    )
    assert pn.name == "backend" and pn.tags == ["pipeline"] and pn.region == "fr-par"
    assert pn.dhcp_enabled and pn.default_route_propagation_enabled
    v4, v6 = (ipaddress.ip_network(s.subnet) for s in pn.subnets)
    assert v4.prefixlen == 22 and v4.subnet_of(ipaddress.ip_network("172.16.0.0/12"))
    assert v6.prefixlen == 64 and str(v6).startswith("fd")
    assert all(s.private_network_id == pn.id and s.vpc_id == pn.vpc_id for s in pn.subnets)

    [default] = vpc.list_vp_cs().vpcs
    assert default.is_default and default.id == pn.vpc_id and default.private_network_count == 1

    other = vpc.create_private_network(
        default_route_propagation_enabled=False, name="front", subnets=["10.20.0.0/24"]
    )
    assert other.subnets[0].subnet == "10.20.0.0/24" and len(other.subnets) == 2
    assert ipaddress.ip_network(other.subnets[1].subnet).version == 6
    second = vpc.create_private_network(default_route_propagation_enabled=False)
    assert second.subnets[0].subnet != pn.subnets[0].subnet  # automatic subnets never overlap

    listed = vpc.list_private_networks(name="back")
    assert [p.id for p in listed.private_networks] == [pn.id] and listed.total_count == 1
    assert vpc.list_private_networks(tags=["pipeline"]).total_count == 1
    assert vpc.list_private_networks(page_size=2, page=2).total_count == 3
    assert len(vpc.list_private_networks_all(page_size=2)) == 3
    assert vpc.get_private_network(private_network_id=pn.id).name == "backend"
    renamed = vpc.update_private_network(private_network_id=pn.id, name="api", tags=[])
    assert (renamed.name, renamed.tags) == ("api", [])

    for network in (pn, other, second):
        vpc.delete_private_network(private_network_id=network.id)
    with pytest.raises(ScalewayException) as caught:
        vpc.get_private_network(private_network_id=pn.id)
    assert caught.value.status_code == 404
    assert vpc.list_private_networks().total_count == 0


def test_vpcs(vpc: VpcV2API) -> None:
    created = vpc.create_vpc(enable_routing=True, enable_transitivity=False, name="lab")
    assert not created.is_default and created.routing_enabled
    pn = vpc.create_private_network(default_route_propagation_enabled=False, vpc_id=created.id)
    assert pn.vpc_id == created.id
    assert {v.name for v in vpc.list_vp_cs().vpcs} == {"default", "lab"}
    with pytest.raises(ScalewayException) as caught:
        vpc.delete_vpc(vpc_id=created.id)
    assert caught.value.status_code == 412
    vpc.delete_private_network(private_network_id=pn.id)
    vpc.delete_vpc(vpc_id=created.id)
    with pytest.raises(ScalewayException) as caught:
        vpc.get_vpc(vpc_id=created.id)
    assert caught.value.response.json()["resource"] == "vpc"


def test_responses_match_the_openapi_contract(localcloud, vpc: VpcV2API) -> None:
    pn = vpc.create_private_network(default_route_propagation_enabled=False, name="c")

    def http(method: str, path: str, body: dict | None = None, status: int = 200) -> dict:
        url = f"{localcloud.url}/vpc/v2/regions/fr-par{path}"
        answer = requests.request(method, url, json=body, headers=TOKEN, timeout=10)
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else {}

    created = http(
        "POST", "/private-networks", {"name": "raw", "project_id": TOKEN["x-auth-token"]}
    )
    check_contract(created, "PrivateNetwork")
    check_contract(http("GET", f"/private-networks/{pn.id}"), "PrivateNetwork")
    check_contract(http("PATCH", f"/private-networks/{pn.id}", {"name": "d"}), "PrivateNetwork")
    check_contract(http("GET", "/private-networks"), "ListPrivateNetworksResponse")
    vpcs = http("GET", "/vpcs")
    check_contract(vpcs, "ListVPCsResponse")
    check_contract(http("GET", f"/vpcs/{vpcs['vpcs'][0]['id']}"), "VPC")
    made = http("POST", "/vpcs", {"name": "x", "enable_routing": True})
    check_contract(made, "VPC")
    http("DELETE", f"/vpcs/{made['id']}", status=204)
    http("DELETE", f"/private-networks/{created['id']}", status=204)


def test_private_nic_gets_ipam_addresses_through_the_instance_api(
    localcloud, client: Client, vpc: VpcV2API, ipam: IpamV1API
) -> None:
    """End to end: a server booting from a Block volume (attach hook), then a private NIC."""
    pn = vpc.create_private_network(default_route_propagation_enabled=False, name="dns")
    block = BlockV1API(client)
    root = block.create_volume(
        name="root", from_empty=CreateVolumeRequestFromEmpty(size=20_000_000_000)
    )
    block.wait_for_volume(volume_id=root.id)
    base = f"{localcloud.url}/instance/v1/zones/fr-par-1"
    made = requests.post(
        f"{base}/servers",
        json={
            "name": "web-1",
            "commercial_type": "DEV1-S",
            "project": client.default_project_id,
            "volumes": {"0": {"id": root.id, "volume_type": "sbs_volume"}},
        },
        headers=TOKEN,
        timeout=10,
    )
    if made.status_code != 201:
        pytest.skip(f"the Instance API cannot make a bare server here: {made.text[:200]}")
    server = made.json()["server"]
    attached = block.get_volume(volume_id=root.id)
    assert attached.status == "in_use"
    assert attached.references[0].product_resource_id == server["id"]
    answer = requests.post(
        f"{base}/servers/{server['id']}/private_nics",
        json={"private_network_id": pn.id},
        headers=TOKEN,
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    nic = answer.json()["private_nic"]
    ips = ipam.list_i_ps(resource_id=nic["id"], resource_type="instance_private_nic").ips
    assert [ip.id for ip in ips] == nic["ipam_ip_ids"]
    assert [ip.is_ipv6 for ip in ips] == [False, True]
    assert ips[0].resource.mac_address == nic["mac_address"]
    assert ips[0].resource.name == "web-1"
    with pytest.raises(ScalewayException) as caught:
        vpc.delete_private_network(private_network_id=pn.id)
    assert caught.value.status_code == 412
    gone = requests.delete(f"{base}/servers/{server['id']}/private_nics/{nic['id']}", headers=TOKEN)
    assert gone.status_code == 204, gone.text
    assert ipam.list_i_ps(resource_id=nic["id"]).total_count == 0
    vpc.delete_private_network(private_network_id=pn.id)


# --- the allocation hook, in process ---------------------------------------------------------


def test_private_nic_hook_allocates_and_releases(tmp_path: Path) -> None:
    cloud = LocalCloud(tmp_path / "state")

    def call(method: str, path: str, body: dict | None = None):
        request = Request.parse(method, path, TOKEN, json.dumps(body or {}).encode())
        return cloud.handle(request)

    pn = call(
        "POST",
        "/vpc/v2/regions/fr-par/private-networks",
        {"name": "lan", "project_id": TOKEN["x-auth-token"], "subnets": ["10.1.220.0/22"]},
    ).body
    changed = cloud.hooks["private_nic_changed"]
    assert changed is cloud.private_nic_changed

    def nic(n: int) -> dict:
        return {
            "id": f"nic-{n}",
            "private_network_id": pn["id"],
            "mac_address": f"02:00:00:00:00:0{n}",
            "zone": "fr-par-1",
            "name": f"server-{n}",
        }

    first = changed(nic(1), True)
    second = changed(nic(2), True)
    assert changed(nic(1), True) == first  # idempotent per NIC
    ips = call("GET", "/ipam/v1/regions/fr-par/ips?private_network_id=" + pn["id"]).body
    assert ips["total_count"] == 4
    by_id = {ip["id"]: ip for ip in ips["ips"]}
    assert by_id[first[0]]["address"] == "10.1.220.2/22"
    assert by_id[second[0]]["address"] == "10.1.220.3/22"
    v6 = ipaddress.ip_interface(by_id[first[1]]["address"])
    assert v6.version == 6 and str(v6.network) == pn["subnets"][1]["subnet"]
    assert by_id[first[0]]["resource"] == {
        "type": "instance_private_nic",
        "id": "nic-1",
        "mac_address": "02:00:00:00:00:01",
        "name": "server-1",
    }
    assert by_id[first[0]]["source"] == {"subnet_id": pn["subnets"][0]["id"]}

    only = call("GET", "/ipam/v1/regions/fr-par/ips?resource_id=nic-2&is_ipv6=False").body
    assert [ip["id"] for ip in only["ips"]] == [second[0]]
    mac = call("GET", "/ipam/v1/regions/fr-par/ips?mac_address=02:00:00:00:00:01").body
    assert mac["total_count"] == 2
    typed = call("GET", "/ipam/v1/regions/fr-par/ips?resource_type=instance_private_nic").body
    assert typed["total_count"] == 4
    assert call("GET", f"/ipam/v1/regions/fr-par/ips/{first[0]}").body["id"] == first[0]
    assert call("GET", "/ipam/v1/regions/nl-ams/ips").body["total_count"] == 0

    refused = call("DELETE", f"/vpc/v2/regions/fr-par/private-networks/{pn['id']}")
    assert refused.status == 412
    assert refused.body["help_message"] == "Private Network must be empty to be deleted"

    # Durable: a new LocalCloud on the same state directory sees the allocations.
    again = LocalCloud(tmp_path / "state")
    assert sorted(again.private_nic_changed(nic(1), False)) == sorted(first)
    changed(nic(2), False)
    assert call("GET", "/ipam/v1/regions/fr-par/ips").body["total_count"] == 0
    assert call("DELETE", f"/vpc/v2/regions/fr-par/private-networks/{pn['id']}").status == 204

    with pytest.raises(ApiError) as caught:
        changed(nic(3), True)
    assert caught.value.status == 404
