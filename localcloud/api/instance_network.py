"""Instance v1 security groups and rules, flexible IPs, and private NICs.

Hooks called on `cloud` when they exist (other modules own the other side):
- `cloud.private_nic_changed(nic: dict, created: bool) -> list[str] | None` after a NIC is
  created (created=True) or deleted (False); a returned list becomes the NIC's
  `ipam_ip_ids` (IPAM allocates its addresses).
"""

from __future__ import annotations

from typing import Any

from localcloud import machines as machine_capabilities
from localcloud.api.instance_common import (
    BASE,
    IP,
    PRIVATE_NIC,
    RULE,
    SECURITY_GROUP,
    SERVER,
    check_tags,
    filter_name,
    filter_owner,
    filter_tags,
    load,
    load_all,
    machines,
    owner,
    public,
    refuse,
    require,
)
from localcloud.http import (
    ApiError,
    Request,
    Response,
    invalid_argument,
    is_uuid,
    new_id,
    no_content,
    not_found,
    ok,
    page_of_instance_list,
)

POLICIES = ("accept", "drop")
PROTOCOLS = ("TCP", "UDP", "ICMP", "ANY")
SMTP_PORTS = (25, 465, 587)


# --- security groups ----------------------------------------------------------------------


def sg_servers(cloud: Any, group_id: str) -> list[dict[str, Any]]:
    return [
        {"id": s["id"], "name": s["name"]}
        for s in cloud.store.all(SERVER, lambda s: s.get("_security_group_id") == group_id)
    ]


def render_sg(cloud: Any, group: dict[str, Any]) -> dict[str, Any]:
    return {**public(group), "servers": sg_servers(cloud, group["id"])}


def new_security_group(cloud: Any, zone: str, body: dict[str, Any]) -> dict[str, Any]:
    """Build and store a group; enable_default_security adds the SMTP drop rules."""
    now = cloud.clock.iso()
    for field in ("inbound_default_policy", "outbound_default_policy"):
        if body.get(field) not in (None, *POLICIES):
            raise invalid_argument(field, "invalid_enum", "accept or drop")
    group = {
        "id": new_id(),
        "name": body.get("name") or f"sg-{new_id()[:8]}",
        "description": body.get("description") or "",
        **owner(body),
        "creation_date": now,
        "modification_date": now,
        "stateful": bool(body.get("stateful", True)),
        "inbound_default_policy": body.get("inbound_default_policy") or "accept",
        "outbound_default_policy": body.get("outbound_default_policy") or "accept",
        "organization_default": bool(body.get("organization_default", False)),
        "project_default": bool(body.get("project_default", False)),
        "enable_default_security": bool(body.get("enable_default_security", True)),
        "state": "available",
        "tags": check_tags(body.get("tags")),
        "zone": zone,
    }
    cloud.store.put(SECURITY_GROUP, group)
    if group["enable_default_security"]:
        position = 1
        for ip_range in ("0.0.0.0/0", "::/0"):
            for port in SMTP_PORTS:
                _put_rule(
                    cloud,
                    group,
                    {
                        "protocol": "TCP",
                        "direction": "outbound",
                        "action": "drop",
                        "ip_range": ip_range,
                        "dest_port_from": port,
                        "position": position,
                    },
                    editable=False,
                )
                position += 1
    return group


def default_security_group(cloud: Any, zone: str, body_owner: dict[str, Any]) -> dict[str, Any]:
    """The project's default group in a zone, created on first use as on Scaleway."""
    groups: list[dict[str, Any]] = cloud.store.all(SECURITY_GROUP)
    for group in groups:
        if (
            group["zone"] == zone
            and group["project"] == body_owner["project"]
            and group["project_default"]
        ):
            return group
    return new_security_group(
        cloud,
        zone,
        {
            **body_owner,
            "name": "Default security group",
            "description": "Auto generated security group.",
            "project_default": True,
        },
    )


def create_security_group(cloud: Any, request: Request, zone: str) -> Response:
    group = new_security_group(cloud, zone, request.json())
    return ok({"security_group": render_sg(cloud, group)}, status=201)


def get_security_group(cloud: Any, request: Request, zone: str, security_group_id: str) -> Response:
    group = load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    return ok({"security_group": render_sg(cloud, group)})


def list_security_groups(cloud: Any, request: Request, zone: str) -> Response:
    items = filter_owner(
        request,
        filter_tags(request, filter_name(request, load_all(cloud, SECURITY_GROUP, zone))),
    )
    wants_default = request.flag("project_default")
    if wants_default is not None:
        items = [i for i in items if i["project_default"] == wants_default]
    return page_of_instance_list(
        request, [render_sg(cloud, i) for i in items], "security_groups", request.path
    )


def update_security_group(
    cloud: Any, request: Request, zone: str, security_group_id: str
) -> Response:
    group = load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    body = request.json()
    for field in ("name", "description", "stateful", "project_default", "enable_default_security"):
        if body.get(field) is not None:
            group[field] = body[field]
    for field in ("inbound_default_policy", "outbound_default_policy"):
        if body.get(field) is not None:
            if body[field] not in POLICIES:
                raise invalid_argument(field, "invalid_enum", "accept or drop")
            group[field] = body[field]
    if body.get("tags") is not None:
        group["tags"] = check_tags(body["tags"])
    group["modification_date"] = cloud.clock.iso()
    cloud.store.put(SECURITY_GROUP, group)
    _rules_changed(cloud, group["id"])
    return ok({"security_group": render_sg(cloud, group)})


def delete_security_group(
    cloud: Any, request: Request, zone: str, security_group_id: str
) -> Response:
    load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    if sg_servers(cloud, security_group_id):
        raise refuse("group is in use. you cannot delete it.")
    cloud.store.delete(SECURITY_GROUP, security_group_id)
    for rule in _rules(cloud, security_group_id):
        cloud.store.delete(RULE, rule["id"])
    return no_content()


# --- rules --------------------------------------------------------------------------------


def _rules_changed(cloud: Any, group_id: str) -> None:
    """Running servers of the group re-apply what it lets in."""
    for server in sg_servers(cloud, group_id):
        machine_capabilities.refresh(machines(cloud), server["id"])


def _rules(cloud: Any, group_id: str) -> list[dict[str, Any]]:
    rules = cloud.store.all(RULE, lambda r: r.get("_security_group_id") == group_id)
    return sorted(rules, key=lambda r: r["position"])


def _put_rule(
    cloud: Any, group: dict[str, Any], body: dict[str, Any], editable: bool, id_: str | None = None
) -> dict[str, Any]:
    """Validate and store one rule; protocol upper-case as the real API returns it."""
    protocol = str(body.get("protocol") or "TCP").upper()
    if protocol not in PROTOCOLS:
        raise invalid_argument("protocol", "invalid_enum", ", ".join(PROTOCOLS))
    direction = body.get("direction") or "inbound"
    if direction not in ("inbound", "outbound"):
        raise invalid_argument("direction", "invalid_enum", "inbound or outbound")
    action = body.get("action") or "accept"
    if action not in POLICIES:
        raise invalid_argument("action", "invalid_enum", "accept or drop")
    # Port 0 is the SDK's way of saying "no port"; ICMP and ANY have none.
    port_from, port_to = body.get("dest_port_from") or None, body.get("dest_port_to") or None
    if protocol in ("ICMP", "ANY"):
        port_from = port_to = None
    if port_to is not None and port_from is not None and port_to == port_from:
        port_to = None  # a single port is returned without dest_port_to, as on Scaleway
    rule = {
        "id": id_ or new_id(),
        "protocol": protocol,
        "direction": direction,
        "ip_range": body.get("ip_range") or "0.0.0.0/0",
        "dest_ip_range": body.get("dest_ip_range"),
        "dest_port_from": port_from,
        "dest_port_to": port_to,
        "position": int(body.get("position") or 0),
        "editable": editable,
        "action": action,
        "zone": group["zone"],
        "_security_group_id": group["id"],
    }
    stored: dict[str, Any] = cloud.store.put(RULE, rule)
    return stored


def _renumber(cloud: Any, group_id: str, first: dict[str, Any] | None = None) -> None:
    """Positions 1..n; a rule just placed at position p goes before the one already there."""
    rules = [r for r in _rules(cloud, group_id) if first is None or r["id"] != first["id"]]
    if first is not None:
        index = first["position"] - 1 if first["position"] > 0 else len(rules)
        rules.insert(max(0, min(index, len(rules))), first)
    for position, rule in enumerate(rules, start=1):
        if rule["position"] != position:
            rule["position"] = position
            cloud.store.put(RULE, rule)


def create_rule(cloud: Any, request: Request, zone: str, security_group_id: str) -> Response:
    group = load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    rule = _put_rule(cloud, group, request.json(), editable=True)
    _renumber(cloud, group["id"], rule)
    _rules_changed(cloud, group["id"])
    return ok({"rule": public(cloud.store.get(RULE, rule["id"]))}, status=201)


def list_rules(cloud: Any, request: Request, zone: str, security_group_id: str) -> Response:
    load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    rules = [public(r) for r in _rules(cloud, security_group_id)]
    return page_of_instance_list(request, rules, "rules", request.path)


def get_rule(
    cloud: Any, request: Request, zone: str, security_group_id: str, security_group_rule_id: str
) -> Response:
    rule = cloud.store.get(RULE, security_group_rule_id)
    if not rule or rule["_security_group_id"] != security_group_id or rule["zone"] != zone:
        raise ApiError(
            404,
            "not_found",
            "resource is not found",
            resource="instance_security_group_rule",
            resource_id=security_group_rule_id,
        )
    return ok({"rule": public(rule)})


def delete_rule(
    cloud: Any, request: Request, zone: str, security_group_id: str, security_group_rule_id: str
) -> Response:
    rule = get_rule(cloud, request, zone, security_group_id, security_group_rule_id).body["rule"]
    if not rule["editable"]:
        raise refuse("this rule is not editable")
    cloud.store.delete(RULE, security_group_rule_id)
    _renumber(cloud, security_group_id)
    _rules_changed(cloud, security_group_id)
    return no_content()


def set_rules(cloud: Any, request: Request, zone: str, security_group_id: str) -> Response:
    """PUT: the editable rules become exactly the given ones (ids kept when given)."""
    group = load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    wanted = request.json().get("rules") or []
    for rule in _rules(cloud, security_group_id):
        if rule["editable"]:
            cloud.store.delete(RULE, rule["id"])
    fixed = len(_rules(cloud, security_group_id))
    for index, body in enumerate(wanted, start=1):
        rule_id = body.get("id") if is_uuid(body.get("id") or "") else None
        body = {**body, "position": body.get("position") or fixed + index}
        _put_rule(cloud, group, body, editable=body.get("editable", True) is not False, id_=rule_id)
    _renumber(cloud, security_group_id)
    _rules_changed(cloud, security_group_id)
    return ok({"rules": [public(r) for r in _rules(cloud, security_group_id)]})


def list_default_rules(cloud: Any, request: Request, zone: str) -> Response:
    """The rules every group starts with: none beyond the SMTP drops (shown here)."""
    rules = [
        {
            "id": new_id(),
            "protocol": "TCP",
            "direction": "outbound",
            "ip_range": ip_range,
            "dest_ip_range": None,
            "dest_port_from": port,
            "dest_port_to": None,
            "position": i,
            "editable": False,
            "action": "drop",
            "zone": zone,
        }
        for i, (ip_range, port) in enumerate(
            ((r, p) for r in ("0.0.0.0/0", "::/0") for p in SMTP_PORTS), start=1
        )
    ]
    return ok({"rules": rules})


# --- flexible IPs -------------------------------------------------------------------------


def _next_address(cloud: Any, family: str) -> tuple[str, str]:
    """A loopback address (127.1.x.y) for IPv4, from which the QEMU backend forwards the
    ports the server's security group lets in; a ULA /64 for IPv6. Returns (address,
    prefix)."""
    with cloud.store.lock:
        counter = int(cloud.store.meta("instance_ip_counter", 0)) + 1
        if family != "inet6":
            while counter & 0xFF in (0, 255):  # each address once, never .0 or .255
                counter += 1
        cloud.store.set_meta("instance_ip_counter", counter)
    if family == "inet6":
        prefix = f"fd00:5c:{counter >> 16 & 0xFFFF:x}:{counter & 0xFFFF:x}::/64"
        return prefix.replace("::/64", "::1"), prefix
    address = f"127.{1 + (counter >> 16 & 0xFF)}.{counter >> 8 & 0xFF}.{counter & 0xFF}"
    return address, f"{address}/32"


def new_ip(
    cloud: Any, zone: str, *, type_: str, body_owner: dict[str, Any], tags: list[str], dynamic: bool
) -> dict[str, Any]:
    """Build and store a flexible (or dynamic, server-bound) IP."""
    if type_ not in ("routed_ipv4", "routed_ipv6"):
        raise invalid_argument("type", "invalid_enum", "routed_ipv4 or routed_ipv6")
    address, prefix = _next_address(cloud, "inet6" if type_ == "routed_ipv6" else "inet")
    ip = {
        "id": new_id(),
        "address": address,
        "prefix": prefix,
        "reverse": None,
        "server": None,
        **body_owner,
        "zone": zone,
        "type": type_,
        "state": "detached",
        "tags": tags,
        "ipam_id": new_id(),
        "_dynamic": dynamic,
    }
    stored: dict[str, Any] = cloud.store.put(IP, ip)
    return stored


def attach_ip(cloud: Any, ip: dict[str, Any], server: dict[str, Any] | None) -> None:
    previous = (ip.get("server") or {}).get("id")
    ip["server"] = {"id": server["id"], "name": server["name"]} if server else None
    ip["state"] = "attached" if server else "detached"
    cloud.store.put(IP, ip)
    # A running server's forwarded ports follow its addresses.
    for server_id in {previous, server["id"] if server else None} - {None}:
        machine_capabilities.refresh(machines(cloud), server_id)


def server_ip(ip: dict[str, Any]) -> dict[str, Any]:
    """How a server shows an attached IP (`public_ips[]`)."""
    v6 = ip["type"] == "routed_ipv6"
    return {
        "id": ip["id"],
        "address": ip["address"],
        "gateway": "fe80::" if v6 else "62.210.0.1",
        "netmask": "64" if v6 else "32",
        "family": "inet6" if v6 else "inet",
        "dynamic": bool(ip.get("_dynamic")),
        "provisioning_mode": "slaac" if v6 else "dhcp",
        "tags": ip["tags"],
        "ipam_id": ip["ipam_id"],
        "state": "attached",
    }


def _server_for_ip(cloud: Any, zone: str, server_id: Any) -> dict[str, Any]:
    if not isinstance(server_id, str):
        raise invalid_argument("server", "invalid_uuid", "a server id")
    return load(cloud, SERVER, zone, server_id, "instance_server")


def create_ip(cloud: Any, request: Request, zone: str) -> Response:
    body = request.json()
    ip = new_ip(
        cloud,
        zone,
        type_=body.get("type") or "routed_ipv4",
        body_owner=owner(body),
        tags=check_tags(body.get("tags")),
        dynamic=False,
    )
    if body.get("server"):
        attach_ip(cloud, ip, _server_for_ip(cloud, zone, body["server"]))
    return ok({"ip": public(ip)}, status=201)


def _find_ip(cloud: Any, zone: str, ip_ref: str) -> dict[str, Any]:
    """`{ip}` is an id or an address, as on Scaleway."""
    if is_uuid(ip_ref):
        return load(cloud, IP, zone, ip_ref, "instance_ip")
    ips: list[dict[str, Any]] = cloud.store.all(
        IP, lambda i: i["zone"] == zone and i["address"] == ip_ref
    )
    for ip in ips:
        return ip
    return load(cloud, IP, zone, ip_ref, "instance_ip")  # raises the 404


def get_ip(cloud: Any, request: Request, zone: str, ip: str) -> Response:
    return ok({"ip": public(_find_ip(cloud, zone, ip))})


def list_ips(cloud: Any, request: Request, zone: str) -> Response:
    items = filter_owner(
        request, filter_tags(request, filter_name(request, load_all(cloud, IP, zone)))
    )
    type_ = request.arg("type")
    if type_:
        items = [i for i in items if i["type"] == type_]
    return page_of_instance_list(request, [public(i) for i in items], "ips", request.path)


def update_ip(cloud: Any, request: Request, zone: str, ip: str) -> Response:
    record = _find_ip(cloud, zone, ip)
    body = request.json()
    if "server" in body:  # null or "" detaches
        target = _server_for_ip(cloud, zone, body["server"]) if body["server"] else None
        attach_ip(cloud, record, target)
    if body.get("reverse") is not None:
        record["reverse"] = body["reverse"] or None
    if body.get("tags") is not None:
        record["tags"] = check_tags(body["tags"])
    cloud.store.put(IP, record)
    return ok({"ip": public(record)})


def delete_ip(cloud: Any, request: Request, zone: str, ip: str) -> Response:
    record = _find_ip(cloud, zone, ip)
    cloud.store.delete(IP, record["id"])
    if record.get("server"):
        machine_capabilities.refresh(machines(cloud), record["server"]["id"])
    return no_content()


# --- private NICs -------------------------------------------------------------------------


def _mac(cloud: Any) -> str:
    with cloud.store.lock:
        counter = int(cloud.store.meta("instance_mac_counter", 0)) + 1
        cloud.store.set_meta("instance_mac_counter", counter)
    return f"02:00:00:{counter >> 16 & 0xFF:02x}:{counter >> 8 & 0xFF:02x}:{counter & 0xFF:02x}"


def nic_changed(cloud: Any, nic: dict[str, Any], created: bool) -> None:
    """Tell IPAM (if present) about a NIC; adopt the addresses it allocates."""
    hook = getattr(cloud, "private_nic_changed", None)
    if hook is None:
        return
    result = hook(public(nic), created)
    if created and isinstance(result, list):
        nic["ipam_ip_ids"] = [r["id"] if isinstance(r, dict) else str(r) for r in result]
        cloud.store.put(PRIVATE_NIC, nic)


def create_private_nic(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = load(cloud, SERVER, zone, server_id, "instance_server")
    body = request.json()
    nic = new_private_nic(
        cloud,
        zone,
        server,
        require(body, "private_network_id"),
        check_tags(body.get("tags")),
        list(body.get("ipam_ip_ids") or []),
    )
    return ok({"private_nic": public(nic)}, status=201)


def new_private_nic(
    cloud: Any,
    zone: str,
    server: dict[str, Any],
    network_id: str,
    tags: list[str],
    ipam_ip_ids: list[str],
) -> dict[str, Any]:
    """A NIC of `server` on a private network (`syncing`, then `available`); also what the
    v2alpha1 private-network-interfaces API makes."""
    for nic in cloud.store.all(PRIVATE_NIC, lambda n: n["server_id"] == server["id"]):
        if nic["private_network_id"] == network_id:
            raise refuse("private network is already attached to this server")
    now = cloud.clock.iso()
    nic = {
        "id": new_id(),
        "server_id": server["id"],
        "private_network_id": network_id,
        "mac_address": _mac(cloud),
        "state": "syncing",
        "tags": tags,
        "creation_date": now,
        "modification_date": now,
        "zone": zone,
        "ipam_ip_ids": ipam_ip_ids,
    }
    if server["state"] == "stopped":
        nic["state"] = "available"  # no hypervisor to configure: at once, as recorded
    else:
        machines(cloud).schedule(nic, [{"state": "available"}])
    cloud.store.put(PRIVATE_NIC, nic)
    nic_changed(cloud, nic, True)
    machine_capabilities.refresh(machines(cloud), server["id"])  # hot-plugged when running
    stored: dict[str, Any] = cloud.store.get(PRIVATE_NIC, nic["id"])
    return stored


def server_nics(cloud: Any, zone: str, server_id: str) -> list[dict[str, Any]]:
    return [n for n in load_all(cloud, PRIVATE_NIC, zone) if n["server_id"] == server_id]


def list_private_nics(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    load(cloud, SERVER, zone, server_id, "instance_server")
    items = filter_tags(request, server_nics(cloud, zone, server_id))
    return page_of_instance_list(request, [public(n) for n in items], "private_nics", request.path)


def _nic(cloud: Any, zone: str, server_id: str, nic_id: str) -> dict[str, Any]:
    load(cloud, SERVER, zone, server_id, "instance_server")
    nic = load(cloud, PRIVATE_NIC, zone, nic_id, "instance_private_nic")
    if nic["server_id"] != server_id:
        raise not_found("instance_private_nic", nic_id)
    return nic


def get_private_nic(
    cloud: Any, request: Request, zone: str, server_id: str, private_nic_id: str
) -> Response:
    return ok({"private_nic": public(_nic(cloud, zone, server_id, private_nic_id))})


def update_private_nic(
    cloud: Any, request: Request, zone: str, server_id: str, private_nic_id: str
) -> Response:
    nic = _nic(cloud, zone, server_id, private_nic_id)
    body = request.json()
    if body.get("tags") is not None:
        nic["tags"] = check_tags(body["tags"])
        nic["modification_date"] = cloud.clock.iso()
        cloud.store.put(PRIVATE_NIC, nic)
    return ok({"private_nic": public(nic)})


def delete_nic_record(cloud: Any, nic: dict[str, Any]) -> None:
    cloud.store.delete(PRIVATE_NIC, nic["id"])
    nic_changed(cloud, nic, False)
    machine_capabilities.refresh(machines(cloud), nic["server_id"])


def delete_private_nic(
    cloud: Any, request: Request, zone: str, server_id: str, private_nic_id: str
) -> Response:
    delete_nic_record(cloud, _nic(cloud, zone, server_id, private_nic_id))
    return no_content()


def register(router: Any, wrap: Any) -> None:
    """Routes of security groups, rules, IPs and private NICs."""
    sg = "/security_groups/{security_group_id}"
    nics = "/servers/{server_id}/private_nics"
    routes = [
        # Before `{security_group_id}/rules`, which would also match "default".
        ("GET", "/security_groups/default/rules", list_default_rules),
        ("POST", "/security_groups", create_security_group),
        ("GET", "/security_groups", list_security_groups),
        ("GET", sg, get_security_group),
        ("PATCH", sg, update_security_group),
        ("DELETE", sg, delete_security_group),
        ("GET", sg + "/rules", list_rules),
        ("POST", sg + "/rules", create_rule),
        ("PUT", sg + "/rules", set_rules),
        ("GET", sg + "/rules/{security_group_rule_id}", get_rule),
        ("DELETE", sg + "/rules/{security_group_rule_id}", delete_rule),
        ("POST", "/ips", create_ip),
        ("GET", "/ips", list_ips),
        ("GET", "/ips/{ip}", get_ip),
        ("PATCH", "/ips/{ip}", update_ip),
        ("DELETE", "/ips/{ip}", delete_ip),
        ("POST", nics, create_private_nic),
        ("GET", nics, list_private_nics),
        ("GET", nics + "/{private_nic_id}", get_private_nic),
        ("PATCH", nics + "/{private_nic_id}", update_private_nic),
        ("DELETE", nics + "/{private_nic_id}", delete_private_nic),
    ]
    for method, path, handler in routes:
        router.add(method, BASE + path, wrap(handler))
