"""Instance v2alpha1 private network interfaces (`/instance/v2alpha1/zones/{zone}/
private-network-interfaces`), what the Terraform provider calls for private NICs since 2026.

The records are the v1 private NICs (one NIC, two views): v1 `state` `syncing` is v2
`status` `attaching`. Shapes as recorded: bare objects, `{"private_network_interfaces": [...],
"total_count": n}` on lists, create -> 200, delete -> 204.
"""

from __future__ import annotations

from typing import Any

from localcloud.api.instance_common import (
    PRIVATE_NIC,
    SECURITY_GROUP,
    SERVER,
    check_tags,
    load,
    load_all,
    require,
)
from localcloud.api.instance_network import delete_nic_record, new_private_nic
from localcloud.http import Request, Response, no_content, not_found, ok, page_of_list

BASE = "/instance/v2alpha1/zones/{zone}/private-network-interfaces"
STATUS = {"syncing": "attaching", "available": "available", "syncing_error": "error"}


def render(cloud: Any, nic: dict[str, Any]) -> dict[str, Any]:
    server = cloud.store.get(SERVER, nic["server_id"]) or {}
    group = cloud.store.get(SECURITY_GROUP, server.get("_security_group_id") or "")
    return {
        "id": nic["id"],
        "server_id": nic["server_id"],
        "private_network_id": nic["private_network_id"],
        "mac_address": nic["mac_address"],
        "status": STATUS.get(nic["state"], nic["state"]),
        "tags": nic.get("tags") or [],
        "ip_ids": list(nic.get("ipam_ip_ids") or []),
        "security_group_id": group["id"] if group else None,
        "project_id": server.get("project"),
        "created_at": nic["creation_date"],
        "updated_at": nic["modification_date"],
    }


def _load(cloud: Any, zone: str, nic_id: str) -> dict[str, Any]:
    return load(cloud, PRIVATE_NIC, zone, nic_id, "private_network_interface")


def list_interfaces(cloud: Any, request: Request, zone: str) -> Response:
    items = [render(cloud, n) for n in load_all(cloud, PRIVATE_NIC, zone)]
    for field, key in (
        ("server_ids", "server_id"),
        ("private_network_ids", "private_network_id"),
    ):
        wanted = request.list_arg(field)
        if wanted:
            items = [i for i in items if i[key] in wanted]
    project = request.arg("project_id")
    if project:
        items = [i for i in items if i["project_id"] == project]
    tags = set(request.list_arg("tags"))
    if tags:
        items = [i for i in items if tags <= set(i["tags"])]
    items.sort(key=lambda i: i["created_at"], reverse=request.arg("order_by") != "created_at_asc")
    return page_of_list(request, items, "private_network_interfaces", default_size=50)


def create_interface(cloud: Any, request: Request, zone: str) -> Response:
    body = request.json()
    server = load(cloud, SERVER, zone, require(body, "server_id"), "instance_server")
    nic = new_private_nic(
        cloud,
        zone,
        server,
        require(body, "private_network_id"),
        check_tags(body.get("tags")),
        list(body.get("ip_ids") or []),
    )
    return ok(render(cloud, nic))


def get_interface(cloud: Any, request: Request, zone: str, nic_id: str) -> Response:
    return ok(render(cloud, _load(cloud, zone, nic_id)))


def update_interface(cloud: Any, request: Request, zone: str, nic_id: str) -> Response:
    nic = _load(cloud, zone, nic_id)
    body = request.json()
    if body.get("tags") is not None:
        nic["tags"] = check_tags(body["tags"])
    nic["modification_date"] = cloud.clock.iso()
    cloud.store.put(PRIVATE_NIC, nic)
    return ok(render(cloud, nic))


def delete_interface(cloud: Any, request: Request, zone: str, nic_id: str) -> Response:
    nic = cloud.store.get(PRIVATE_NIC, nic_id)
    if nic is None or nic.get("zone") != zone:
        raise not_found("private_network_interface", nic_id)
    delete_nic_record(cloud, nic)
    return no_content()


def register(router: Any, wrap: Any) -> None:
    """Routes of the v2alpha1 private network interfaces."""
    one = BASE + "/{nic_id}"
    router.add("GET", BASE, wrap(list_interfaces))
    router.add("POST", BASE, wrap(create_interface))
    router.add("GET", one, wrap(get_interface))
    router.add("PATCH", one, wrap(update_interface))
    router.add("DELETE", one, wrap(delete_interface))
