"""VPC v2: VPCs and Private Networks, `/vpc/v2/regions/{region}/...`.

Each project gets a default VPC per region the first time it touches VPC in that region (as
on Scaleway since the VPC v2 migration). A Private Network without subnets gets an automatic
`172.16.x.0/22` plus an `fd..::/64`; IP addresses in them are handed out by IPAM
(localcloud.api.ipam) when the Instance API attaches a private NIC, and a network that still
holds IPAM addresses refuses deletion with the real 412.

Hook published by `install(cloud)`: `private_network_lookup(private_network_id) -> dict | None`
(the public Private Network, whatever its region), e.g. for `.internal` DNS names.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from localcloud.http import (
    ApiError,
    Request,
    Response,
    invalid_argument,
    new_id,
    no_content,
    not_found,
    ok,
    page_of_list,
)

BASE = "/vpc/v2/regions/{region}"
VPC = "vpc"
PRIVATE_NETWORK = "vpc_private_network"
IPAM_IP = "ipam_ip"  # localcloud.api.ipam's kind: addresses still held in a network
REGIONS = ("fr-par", "nl-ams", "pl-waw")
DEFAULT_PROJECT = "00000000-0000-0000-0000-000000000000"


def _check_region(region: str) -> None:
    if region not in REGIONS:
        raise invalid_argument("region", "unknown_region", f"region must be one of {REGIONS}")


def _still_in_use(message: str) -> ApiError:
    # The real answer (scaleway-sdk-go: "precondition failed: resource is still in use,
    # Private Network must be empty to be deleted").
    return ApiError(
        412,
        "precondition_failed",
        "precondition is not respected",
        precondition="resource_still_in_use",
        help_message=message,
    )


def _order(items: list[dict[str, Any]], order_by: str | None) -> list[dict[str, Any]]:
    field, _, direction = (order_by or "created_at_asc").rpartition("_")
    if field not in ("created_at", "name"):
        field = "created_at"
    return sorted(items, key=lambda o: o.get(field) or "", reverse=direction == "desc")


def _filter(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """name (substring), tags (any of), project_id. organization_id is not filtered on:
    localcloud has no organizations and the SDK always sends the client's default."""
    name = request.arg("name")
    tags = set(request.list_arg("tags"))
    project = request.arg("project_id")
    if name:
        items = [o for o in items if name in o["name"]]
    if tags:
        items = [o for o in items if tags & set(o["tags"])]
    if project:
        items = [o for o in items if o["project_id"] == project]
    return items


# --- VPCs -------------------------------------------------------------------------------------


def _new_vpc(
    cloud: Any, region: str, project: str, name: str, default: bool, data: dict[str, Any]
) -> dict[str, Any]:
    now = cloud.clock.iso()
    return {
        "id": new_id(),
        "name": name,
        "organization_id": project,
        "project_id": project,
        "region": region,
        "tags": list(data.get("tags") or []),
        "is_default": default,
        "created_at": now,
        "updated_at": now,
        "routing_enabled": bool(data.get("enable_routing", True)),
        "custom_routes_propagation_enabled": bool(data.get("enable_routing", True)),
        "transitivity_enabled": bool(data.get("enable_transitivity", False)),
        "object_storage_private_access_enabled": False,
        # The same setting as the real API names it since 2026 (recorded answers).
        "s3_integration_enabled": False,
    }


def default_vpc(cloud: Any, region: str, project: str) -> dict[str, Any]:
    """The project's default VPC in the region, created on first use."""
    with cloud.store.lock:
        found: list[dict[str, Any]] = cloud.store.all(
            VPC,
            lambda v: v["region"] == region and v["project_id"] == project and v["is_default"],
        )
        if found:
            return found[0]
        vpc: dict[str, Any] = cloud.store.put(
            VPC, _new_vpc(cloud, region, project, "default", True, {})
        )
        return vpc


def _render_vpc(cloud: Any, vpc: dict[str, Any]) -> dict[str, Any]:
    count = len(cloud.store.all(PRIVATE_NETWORK, lambda p: p["vpc_id"] == vpc["id"]))
    return {**vpc, "private_network_count": count}


def _load_vpc(cloud: Any, region: str, vpc_id: str) -> dict[str, Any]:
    vpc: dict[str, Any] | None = cloud.store.get(VPC, vpc_id)
    if vpc is None or vpc["region"] != region:
        raise not_found("vpc", vpc_id)
    return vpc


def list_vpcs(cloud: Any, request: Request, region: str) -> Response:
    _check_region(region)
    project = request.arg("project_id")
    if project:
        default_vpc(cloud, region, project)
    items = _filter(request, cloud.store.all(VPC, lambda v: v["region"] == region))
    is_default = request.flag("is_default")
    if is_default is not None:
        items = [v for v in items if v["is_default"] == is_default]
    items = _order(items, request.arg("order_by"))
    return page_of_list(request, [_render_vpc(cloud, v) for v in items], "vpcs")


def create_vpc(cloud: Any, request: Request, region: str) -> Response:
    _check_region(region)
    data = request.json()
    project = data.get("project_id") or DEFAULT_PROJECT
    default_vpc(cloud, region, project)
    vpc = _new_vpc(cloud, region, project, data.get("name") or f"vpc-{new_id()[:8]}", False, data)
    cloud.store.put(VPC, vpc)
    return ok(_render_vpc(cloud, vpc))


def get_vpc(cloud: Any, request: Request, region: str, vpc_id: str) -> Response:
    return ok(_render_vpc(cloud, _load_vpc(cloud, region, vpc_id)))


def update_vpc(cloud: Any, request: Request, region: str, vpc_id: str) -> Response:
    data = request.json()
    with cloud.store.lock:
        vpc = _load_vpc(cloud, region, vpc_id)
        if data.get("name") is not None:
            vpc["name"] = data["name"]
        if data.get("tags") is not None:
            vpc["tags"] = list(data["tags"])
        vpc["updated_at"] = cloud.clock.iso()
        cloud.store.put(VPC, vpc)
    return ok(_render_vpc(cloud, vpc))


def delete_vpc(cloud: Any, request: Request, region: str, vpc_id: str) -> Response:
    with cloud.store.lock:
        vpc = _load_vpc(cloud, region, vpc_id)
        if cloud.store.all(PRIVATE_NETWORK, lambda p: p["vpc_id"] == vpc["id"]):
            raise _still_in_use("VPC must be empty to be deleted")
        cloud.store.delete(VPC, vpc_id)
    return no_content()


# --- Private Networks -------------------------------------------------------------------------


def _auto_ipv4(cloud: Any) -> str:
    """The next free 172.16.x.0/22 among every network (Scaleway avoids overlaps too)."""
    used = set()
    for pn in cloud.store.all(PRIVATE_NETWORK):
        for subnet in pn["subnets"]:
            used.add(subnet["subnet"])
    for second in range(16, 32):
        for third in range(0, 256, 4):
            candidate = f"172.{second}.{third}.0/22"
            if candidate not in used:
                return candidate
    raise ApiError(400, "quotas_exceeded", "no free automatic IPv4 subnet left")


def _auto_ipv6(pn_id: str) -> str:
    """A unique-local /64 derived from the network id (stable, no registry needed)."""
    h = hashlib.sha256(pn_id.encode()).hexdigest()
    # Canonical text (no leading zeros in a group), as ipaddress and IPAM write it.
    return str(ipaddress.ip_network(f"fd{h[0:2]}:{h[2:6]}:{h[6:10]}:{h[10:14]}::/64"))


def _subnet(cloud: Any, cidr: str, pn: dict[str, Any]) -> dict[str, Any]:
    now = cloud.clock.iso()
    return {
        "id": new_id(),
        "created_at": now,
        "updated_at": now,
        "subnet": cidr,
        "project_id": pn["project_id"],
        "private_network_id": pn["id"],
        "vpc_id": pn["vpc_id"],
        "region": pn["region"],
    }


def _parse_subnets(values: list[Any]) -> list[str]:
    cidrs = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value), strict=True)
        except ValueError as exc:
            raise invalid_argument("subnets", "invalid_ip_network", str(exc)) from exc
        if network.version == 4 and not network.is_private:
            raise invalid_argument("subnets", "invalid_ip_network", f"{value} is not private")
        cidrs.append(str(network))
    return cidrs


def list_private_networks(cloud: Any, request: Request, region: str) -> Response:
    _check_region(region)
    items = _filter(request, cloud.store.all(PRIVATE_NETWORK, lambda p: p["region"] == region))
    if request.list_arg("private_network_ids"):
        wanted = set(request.list_arg("private_network_ids"))
        items = [p for p in items if p["id"] in wanted]
    if request.arg("vpc_id"):
        items = [p for p in items if p["vpc_id"] == request.arg("vpc_id")]
    dhcp = request.flag("dhcp_enabled")
    if dhcp is not None:
        items = [p for p in items if p["dhcp_enabled"] == dhcp]
    return page_of_list(request, _order(items, request.arg("order_by")), "private_networks")


def create_private_network(cloud: Any, request: Request, region: str) -> Response:
    _check_region(region)
    data = request.json()
    project = data.get("project_id") or DEFAULT_PROJECT
    if data.get("vpc_id"):
        vpc = _load_vpc(cloud, region, data["vpc_id"])
    else:
        vpc = default_vpc(cloud, region, project)
    cidrs = _parse_subnets(data.get("subnets") or [])
    now = cloud.clock.iso()
    pn = {
        "id": new_id(),
        "name": data.get("name") or f"pn-{new_id()[:8]}",
        "organization_id": project,
        "project_id": project,
        "region": region,
        "tags": list(data.get("tags") or []),
        "created_at": now,
        "updated_at": now,
        "subnets": [],
        "vpc_id": vpc["id"],
        "dhcp_enabled": True,
        "default_route_propagation_enabled": bool(data.get("default_route_propagation_enabled")),
        "has_object_storage_private_access": False,
        "has_s3_integration": False,  # the 2026 name (recorded answers)
    }
    with cloud.store.lock:
        # Like Scaleway: a missing family gets an automatic subnet.
        if not any(ipaddress.ip_network(c).version == 4 for c in cidrs):
            cidrs.insert(0, _auto_ipv4(cloud))
        if not any(ipaddress.ip_network(c).version == 6 for c in cidrs):
            cidrs.append(_auto_ipv6(pn["id"]))
        pn["subnets"] = [_subnet(cloud, c, pn) for c in cidrs]
        cloud.store.put(PRIVATE_NETWORK, pn)
    return ok(pn)


def _load_pn(cloud: Any, region: str, pn_id: str) -> dict[str, Any]:
    pn: dict[str, Any] | None = cloud.store.get(PRIVATE_NETWORK, pn_id)
    if pn is None or pn["region"] != region:
        raise not_found("private_network", pn_id)
    return pn


def get_private_network(
    cloud: Any, request: Request, region: str, private_network_id: str
) -> Response:
    return ok(_load_pn(cloud, region, private_network_id))


def update_private_network(
    cloud: Any, request: Request, region: str, private_network_id: str
) -> Response:
    data = request.json()
    with cloud.store.lock:
        pn = _load_pn(cloud, region, private_network_id)
        if data.get("name") is not None:
            pn["name"] = data["name"]
        if data.get("tags") is not None:
            pn["tags"] = list(data["tags"])
        if data.get("default_route_propagation_enabled") is not None:
            pn["default_route_propagation_enabled"] = bool(
                data["default_route_propagation_enabled"]
            )
        pn["updated_at"] = cloud.clock.iso()
        cloud.store.put(PRIVATE_NETWORK, pn)
    return ok(pn)


def delete_private_network(
    cloud: Any, request: Request, region: str, private_network_id: str
) -> Response:
    with cloud.store.lock:
        pn = _load_pn(cloud, region, private_network_id)
        held = cloud.store.all(IPAM_IP, lambda ip: ip.get("_private_network_id") == pn["id"])
        if held:
            raise _still_in_use("Private Network must be empty to be deleted")
        cloud.store.delete(PRIVATE_NETWORK, pn["id"])
    return no_content()


def enable_dhcp(cloud: Any, request: Request, region: str, private_network_id: str) -> Response:
    with cloud.store.lock:
        pn = _load_pn(cloud, region, private_network_id)
        pn["dhcp_enabled"] = True
        pn["updated_at"] = cloud.clock.iso()
        cloud.store.put(PRIVATE_NETWORK, pn)
    return ok(pn)


def install(cloud: Any) -> None:
    """Publish `private_network_lookup(private_network_id) -> dict | None`."""
    cloud.add_hook("private_network_lookup", lambda pn_id: cloud.store.get(PRIVATE_NETWORK, pn_id))


def register(router: Any) -> None:
    router.add("GET", f"{BASE}/vpcs", list_vpcs)
    router.add("POST", f"{BASE}/vpcs", create_vpc)
    router.add("GET", f"{BASE}/vpcs/{{vpc_id}}", get_vpc)
    router.add("PATCH", f"{BASE}/vpcs/{{vpc_id}}", update_vpc)
    router.add("DELETE", f"{BASE}/vpcs/{{vpc_id}}", delete_vpc)
    router.add("GET", f"{BASE}/private-networks", list_private_networks)
    router.add("POST", f"{BASE}/private-networks", create_private_network)
    router.add("GET", f"{BASE}/private-networks/{{private_network_id}}", get_private_network)
    router.add("PATCH", f"{BASE}/private-networks/{{private_network_id}}", update_private_network)
    router.add("DELETE", f"{BASE}/private-networks/{{private_network_id}}", delete_private_network)
    router.add("POST", f"{BASE}/private-networks/{{private_network_id}}/enable-dhcp", enable_dhcp)
