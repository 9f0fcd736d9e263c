"""IPAM v1: the private addresses of private NICs, `/ipam/v1/regions/{region}/ips`.

Addresses are allocated by the `private_nic_changed` hook, which the Instance API calls when
it creates or deletes a private NIC: one IPv4 from the network's IPv4 subnet (first free host
from .2, .1 being the gateway) and one IPv6 from its IPv6 subnet, both stored durably as
`ipam_ip` resources. A network that still holds addresses cannot be deleted (see vpc.py).

Hook published by `install(cloud)`:
`private_nic_changed(nic: dict, created: bool) -> list[dict]`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from localcloud.http import Request, Response, invalid_argument, new_id, not_found, ok, page_of_list

BASE = "/ipam/v1/regions/{region}"
IPAM_IP = "ipam_ip"
PRIVATE_NETWORK = "vpc_private_network"  # localcloud.api.vpc's kind
SERVER = "instance_server"  # the Instance API's kind, read for the resource name
RESOURCE_TYPE = "instance_private_nic"


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _first_free(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, taken: set[str]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The first host from network+2 (network+1 is the gateway, as on Scaleway)."""
    start = int(network.network_address) + 2
    end = int(network.broadcast_address) - (1 if network.version == 4 else 0)
    for value in range(start, end):
        address = ipaddress.ip_address(value)
        if str(address) not in taken:
            return address
    raise invalid_argument("private_network_id", "no_free_ip", f"subnet {network} is full")


def _resource_name(cloud: Any, nic: dict[str, Any]) -> str | None:
    if nic.get("name"):
        return str(nic["name"])
    server = cloud.store.get(SERVER, nic.get("server_id") or "")
    return str(server["name"]) if server and server.get("name") is not None else None


def allocate(cloud: Any, nic: dict[str, Any]) -> list[dict[str, Any]]:
    """Give a private NIC one IPv4 and one IPv6 in its network (idempotent per NIC)."""
    pn = cloud.store.get(PRIVATE_NETWORK, nic.get("private_network_id") or "")
    if pn is None:
        raise not_found("private_network", nic.get("private_network_id") or "")
    with cloud.store.lock:
        existing = cloud.store.all(IPAM_IP, lambda ip: ip["resource"]["id"] == nic["id"])
        if existing:
            return [_public(ip) for ip in existing]
        in_network = cloud.store.all(IPAM_IP, lambda ip: ip["_private_network_id"] == pn["id"])
        taken = {ip["address"].split("/")[0] for ip in in_network}
        now = cloud.clock.iso()
        allocated = []
        for subnet in pn["subnets"]:
            network = ipaddress.ip_network(subnet["subnet"])
            address = _first_free(network, taken)
            taken.add(str(address))
            ip = {
                "id": new_id(),
                "address": f"{address}/{network.prefixlen}",
                "project_id": pn["project_id"],
                "is_ipv6": network.version == 6,
                "created_at": now,
                "updated_at": now,
                "source": {"subnet_id": subnet["id"]},
                "resource": {
                    "type": RESOURCE_TYPE,
                    "id": nic["id"],
                    "mac_address": nic.get("mac_address"),
                    "name": _resource_name(cloud, nic),
                },
                "tags": [],
                "reverses": [],
                "region": pn["region"],
                "zone": nic.get("zone"),
                "_private_network_id": pn["id"],
                "_vpc_id": pn["vpc_id"],
            }
            cloud.store.put(IPAM_IP, ip)
            allocated.append(_public(ip))
    return allocated


def release(cloud: Any, nic_id: str) -> list[dict[str, Any]]:
    """Free every address of a NIC; returns what was released."""
    with cloud.store.lock:
        held = cloud.store.all(IPAM_IP, lambda ip: ip["resource"]["id"] == nic_id)
        for ip in held:
            cloud.store.delete(IPAM_IP, ip["id"])
    return [_public(ip) for ip in held]


def private_nic_changed(cloud: Any, nic: dict[str, Any], created: bool) -> list[str]:
    """The hook: allocate on creation, release on deletion; returns the ids of the IPs
    allocated (IPv4 first: they are the NIC's `ipam_ip_ids`) or released.

    `nic` needs `id` and `private_network_id`, and should carry `mac_address` and `zone`.
    IPAM shows the server's name as the resource name: `nic["name"]` if given, else the
    name of the `instance_server` record `nic["server_id"]`. Raises ApiError 404
    `private_network` if the network does not exist.
    """
    if created:
        return [ip["id"] for ip in allocate(cloud, nic)]
    return [ip["id"] for ip in release(cloud, nic["id"])]


# --- the API ----------------------------------------------------------------------------------


def list_ips(cloud: Any, request: Request, region: str) -> Response:
    items = cloud.store.all(IPAM_IP, lambda ip: ip["region"] == region)
    simple: dict[str, Callable[[dict[str, Any], str], bool]] = {
        "resource_id": lambda ip, v: ip["resource"]["id"] == v,
        "resource_type": lambda ip, v: ip["resource"]["type"] == v,
        "resource_name": lambda ip, v: v in (ip["resource"].get("name") or ""),
        "mac_address": lambda ip, v: (ip["resource"].get("mac_address") or "").lower() == v.lower(),
        "private_network_id": lambda ip, v: ip["_private_network_id"] == v,
        "subnet_id": lambda ip, v: ip["source"]["subnet_id"] == v,
        "vpc_id": lambda ip, v: ip["_vpc_id"] == v,
        "project_id": lambda ip, v: ip["project_id"] == v,
        "zonal": lambda ip, v: ip.get("zone") == v,
    }
    for name, match in simple.items():
        value = request.arg(name)
        if value:
            items = [ip for ip in items if match(ip, value)]
    for name, field in (("resource_ids", "id"), ("resource_types", "type")):
        wanted = set(request.list_arg(name))
        if wanted:
            items = [ip for ip in items if ip["resource"][field] in wanted]
    if request.list_arg("ip_ids"):
        wanted = set(request.list_arg("ip_ids"))
        items = [ip for ip in items if ip["id"] in wanted]
    is_ipv6 = request.flag("is_ipv6")
    if is_ipv6 is not None:
        items = [ip for ip in items if ip["is_ipv6"] == is_ipv6]
    attached = request.flag("attached")
    if attached is False:
        items = []  # every localcloud address belongs to a NIC
    if request.flag("regional"):
        items = []
    order = request.arg("order_by") or "created_at_asc"
    field, _, direction = order.rpartition("_")
    key = "address" if field == "address" else "created_at"
    items = sorted(items, key=lambda ip: ip[key], reverse=direction == "desc")
    return page_of_list(request, [_public(ip) for ip in items], "ips")


def get_ip(cloud: Any, request: Request, region: str, ip_id: str) -> Response:
    ip = cloud.store.get(IPAM_IP, ip_id)
    if ip is None or ip["region"] != region:
        raise not_found("ip", ip_id)
    return ok(_public(ip))


def install(cloud: Any) -> None:
    """Publish `private_nic_changed(nic, created)` for the Instance API."""
    cloud.add_hook(
        "private_nic_changed", lambda nic, created: private_nic_changed(cloud, nic, created)
    )


def register(router: Any) -> None:
    router.add("GET", f"{BASE}/ips", list_ips)
    router.add("GET", f"{BASE}/ips/{{ip_id}}", get_ip)
