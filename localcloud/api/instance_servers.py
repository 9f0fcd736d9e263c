"""Instance v1 servers: create/get/list/update/delete, actions and their state machine,
user data, volume attach/detach, compatible types and the server-type catalogue.

Hooks called on `cloud` when they exist:
- `cloud.resolve_marketplace_image(zone, image, commercial_type) -> str | dict | None`: a
  Marketplace local-image id or label -> the instance image id (or an instance image dict)
  to boot; None: unknown. An ApiError it raises (deprecated image) is the answer;
- `cloud.block_volume_for_server(...)` and `cloud.block_snapshot_of_volume(...)`: Block
  volumes of SBS roots and `sbs_volume` entries, Block snapshots of a backup;
- `cloud.audit_record(zone, method_name, request, status, resource)` after a server action;
- `cloud.block_volume_attached(zone, volume_id, server_id, attached: bool) -> None` when an
  `sbs_volume` is attached to or detached from a server (the Block module marks it in_use).
"""

from __future__ import annotations

import base64
from typing import Any

from localcloud import machines as machine_capabilities
from localcloud.api import instance_products as products
from localcloud.api.instance_common import (
    BASE,
    IMAGE,
    IP,
    PRIVATE_NIC,
    SECURITY_GROUP,
    SERVER,
    SNAPSHOT,
    VOLUME,
    check_tags,
    filter_owner,
    filter_tags,
    load,
    load_all,
    machines,
    on_gone,
    owner,
    public,
    refuse,
    require,
    task,
)
from localcloud.api.instance_network import (
    attach_ip,
    default_security_group,
    delete_nic_record,
    new_ip,
    server_ip,
    server_nics,
)
from localcloud.api.instance_storage import new_image, new_snapshot, new_volume
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
from localcloud.machines import STOPPED_STATES, allowed_actions

ACTIONS = ("poweron", "poweroff", "stop_in_place", "reboot", "terminate", "backup")
BOOT_TYPES = ("local", "rescue")


# --- rendering ----------------------------------------------------------------------------


def render(cloud: Any, server: dict[str, Any]) -> dict[str, Any]:
    """The Server JSON: the record plus what is derived from other records."""
    zone = server["zone"]
    volumes: dict[str, dict[str, Any]] = {}
    for slot, ref in server["_volumes"].items():
        if ref["volume_type"] == "l_ssd":
            volume = cloud.store.get(VOLUME, ref["id"])
            if volume:
                volumes[slot] = {**public(volume), "boot": slot == "0"}
        else:  # an attached SBS volume appears minimal, as on Scaleway
            volumes[slot] = {
                "boot": False,
                "volume_type": ref["volume_type"],
                "id": ref["id"],
                "state": "available",
                "zone": zone,
            }
    ips = [server_ip(ip) for ip in cloud.store.all(IP, lambda i: _ip_on(i, server["id"]))]
    group = cloud.store.get(SECURITY_GROUP, server["_security_group_id"] or "")
    return {
        **public(server),
        "volumes": volumes,
        "public_ips": ips,
        "public_ip": ips[0] if ips else None,
        "private_nics": [public(n) for n in server_nics(cloud, zone, server["id"])],
        "security_group": {"id": group["id"], "name": group["name"]} if group else None,
        "allowed_actions": allowed_actions(server["state"]),
    }


def _ip_on(ip: dict[str, Any], server_id: str) -> bool:
    return (ip.get("server") or {}).get("id") == server_id


def _load(cloud: Any, zone: str, server_id: str) -> dict[str, Any]:
    return load(cloud, SERVER, zone, server_id, "instance_server")


# --- create -------------------------------------------------------------------------------


def resolve_image(cloud: Any, zone: str, image: str, commercial_type: str) -> dict[str, Any]:
    """An instance image of the zone, else the Marketplace hook's answer, else 404."""
    if is_uuid(image):
        record = cloud.store.get(IMAGE, image)
        if record and record["zone"] == zone:
            return public(record)
    resolver = getattr(cloud, "resolve_marketplace_image", None)
    found = resolver(zone, image, commercial_type) if resolver else None
    if isinstance(found, str):  # a local-image id is the instance image id it stands for
        record = cloud.store.get(IMAGE, found)
        if record is None or record["zone"] != zone:
            raise not_found("instance_image", found)
        return public(record)
    if found:
        resolved: dict[str, Any] = found
        return resolved
    if not is_uuid(image):
        raise ApiError(
            404,
            "not_found",
            "resource is not found",
            resource="MarketplaceImage",
            resource_id=image,
        )
    raise not_found("instance_image", image)


def _extra_volume(
    cloud: Any,
    zone: str,
    server: dict[str, Any],
    slot: str,
    tpl: dict[str, Any],
    who: dict[str, Any],
) -> dict[str, Any]:
    """One non-root entry of the create body's `volumes`: attach, from snapshot or empty;
    a new `sbs_volume` entry is made in the Block API."""
    volume_type = tpl.get("volume_type")
    if not volume_type:
        local = tpl.get("id") and cloud.store.get(VOLUME, tpl["id"]) is not None
        volume_type = "l_ssd" if local or not tpl.get("id") else "sbs_volume"
    if volume_type not in ("l_ssd", "sbs_volume"):
        raise _volume_type_refused(volume_type)
    if not tpl.get("id") and volume_type == "sbs_volume":
        return _block_volume_for(
            cloud,
            zone,
            server,
            name=tpl.get("name") or f"{server['name']}-vol-{slot}",
            size=tpl.get("size"),
            snapshot_id=tpl.get("base_snapshot"),
            who=who,
        )
    if tpl.get("id") and volume_type != "l_ssd":
        _block_hook(cloud, zone, tpl["id"], server["id"], True)
        return {"id": tpl["id"], "volume_type": volume_type}
    if tpl.get("id"):
        volume = load(cloud, VOLUME, zone, tpl["id"], "instance_volume")
        if volume.get("server"):
            raise refuse(f"volume {volume['id']} is already attached to a server")
        volume["server"] = {"id": server["id"], "name": server["name"]}
        cloud.store.put(VOLUME, volume)
        return {"id": volume["id"], "volume_type": "l_ssd"}
    base = tpl.get("base_snapshot")
    size = tpl.get("size")
    if base:
        snapshot = load(cloud, SNAPSHOT, zone, base, "instance_snapshot")
        size = size or snapshot["size"]
    if not isinstance(size, int) or size <= 0:
        raise invalid_argument(f"volumes.{slot}.size", help_message="size in bytes")
    volume = new_volume(
        cloud,
        zone,
        name=tpl.get("name") or f"{server['name']}-vol-{slot}",
        size=size,
        body_owner=who,
        server=server,
        base_snapshot=base,
    )
    return {"id": volume["id"], "volume_type": "l_ssd"}


def _root_of(
    cloud: Any, zone: str, image: dict[str, Any] | None, root_tpl: dict[str, Any]
) -> tuple[str | None, str]:
    """The root volume's base snapshot and type: an SBS image root (`sbs_snapshot`) or a
    Block `base_snapshot` makes an `sbs_volume`, an Instance snapshot an `l_ssd` one. A
    `volume_type` asked in `volumes.0` must agree with the base (as Scaleway refuses to make
    a volume of one type from a base of the other)."""
    base = root_tpl.get("base_snapshot") or (image or {}).get("root_volume", {}).get("id")
    if root_tpl.get("id") and not image:
        return None, root_tpl.get("volume_type") or (
            "l_ssd" if cloud.store.get(VOLUME, root_tpl["id"]) else "sbs_volume"
        )
    if root_tpl.get("base_snapshot"):
        block = cloud.store.get(SNAPSHOT, base) is None and _block_snapshot(cloud, zone, base)
        base_type = "sbs_snapshot" if block else "l_ssd"
    elif image:
        base_type = image.get("root_volume", {}).get("volume_type") or "l_ssd"
    else:
        base_type = "l_ssd"
    made = "sbs_volume" if base_type == "sbs_snapshot" else "l_ssd"
    wanted = root_tpl.get("volume_type") or made
    if wanted not in ("l_ssd", "sbs_volume"):
        raise _volume_type_refused(wanted)
    if base and wanted != made:
        raise refuse(f"cannot create a volume of type {wanted} from a base of type {base_type}")
    return base, wanted


def _block_snapshot(cloud: Any, zone: str, snapshot_id: str | None) -> bool:
    lookup = getattr(cloud, "block_snapshot_lookup", None)
    return bool(snapshot_id and lookup and lookup(zone, snapshot_id))


def _volume_type_refused(volume_type: str) -> ApiError:
    """b_ssd (and any type but l_ssd/sbs_volume): Block Storage replaced Instance block
    volumes, and the Instance API no longer makes them."""
    return invalid_argument(
        "volume_type",
        "invalid_enum",
        f"volume type {volume_type} is not supported anymore: use l_ssd, or sbs_volume "
        "through the Block Storage API",
    )


def _check_local_storage(
    cloud: Any,
    zone: str,
    commercial_type: str,
    image: dict[str, Any] | None,
    root_type: str,
    volumes_tpl: dict[str, Any],
) -> None:
    """A type without local storage (volumes_constraint.max_size 0: PLAY2, PRO2, POP2,
    COPARM1) takes no l_ssd volume, neither its root nor another one (400 before anything
    is made, as Scaleway checks the local volumes' total size against the type)."""
    if products.local_max(commercial_type) > 0:
        return
    local = root_type == "l_ssd"
    for extra in ((image or {}).get("extra_volumes") or {}).values():
        local = local or extra.get("volume_type", "l_ssd") == "l_ssd"
    for slot, tpl in volumes_tpl.items():
        if slot == "0" or not tpl:
            continue
        if tpl.get("id"):
            local = local or cloud.store.get(VOLUME, tpl["id"]) is not None
        else:
            local = local or (tpl.get("volume_type") or "l_ssd") == "l_ssd"
    if local:
        raise refuse(
            f"The total size of local-volume(s) of instances {commercial_type} must be "
            "equal to 0GB: this type has no local storage, use Block Storage (sbs_volume)"
        )


def _block_volume_for(
    cloud: Any,
    zone: str,
    server: dict[str, Any],
    *,
    name: str,
    size: Any,
    snapshot_id: str | None,
    who: dict[str, Any],
) -> dict[str, Any]:
    """A Block volume made for the server through the Block module (attached at once)."""
    make = getattr(cloud, "block_volume_for_server", None)
    if make is None:
        raise refuse("Block Storage is not available in this zone")
    volume = make(
        zone,
        server_id=server["id"],
        name=name,
        size=int(size) if size else None,
        snapshot_id=snapshot_id,
        project_id=who["project"],
    )
    return {"id": volume["id"], "volume_type": "sbs_volume"}


def create_server(cloud: Any, request: Request, zone: str) -> Response:
    body = request.json()
    commercial_type = require(body, "commercial_type")
    if commercial_type not in products.names():
        raise refuse(f"{commercial_type} is not a valid commercial type in {zone}")
    volumes_tpl: dict[str, Any] = body.get("volumes") or {}
    root_tpl = volumes_tpl.get("0") or {}
    who = owner(body)
    image: dict[str, Any] | None = None
    if body.get("image"):
        image = resolve_image(cloud, zone, str(body["image"]), commercial_type)
        if image.get("arch") and image["arch"] != products.arch_of(commercial_type):
            raise refuse(
                f"image arch {image['arch']} is not compatible with {commercial_type} "
                f"({products.arch_of(commercial_type)})"
            )
    elif not any(root_tpl.get(k) for k in ("base_snapshot", "id", "size")):
        raise invalid_argument("image", help_message="an image id, a label, or volumes.0")
    security_group_id = body.get("security_group")
    if security_group_id:
        load(cloud, SECURITY_GROUP, zone, security_group_id, "instance_security_group")
    else:
        security_group_id = default_security_group(cloud, zone, who)["id"]
    boot_type = body.get("boot_type") or "local"
    if boot_type not in BOOT_TYPES:
        raise invalid_argument("boot_type", "invalid_enum", "local or rescue")
    root_base, root_type = _root_of(cloud, zone, image, root_tpl)
    _check_local_storage(cloud, zone, commercial_type, image, root_type, volumes_tpl)
    now = cloud.clock.iso()
    server_id = new_id()
    name = body.get("name") or f"scw-{server_id[:6]}"
    server = {
        "id": server_id,
        "name": name,
        **who,
        "arch": products.arch_of(commercial_type),
        "commercial_type": commercial_type,
        "boot_type": boot_type,
        "hostname": name,
        "image": image,
        "tags": check_tags(body.get("tags")),
        "state": "stopped",
        "state_detail": "",
        "protected": bool(body.get("protected", False)),
        "mac_address": f"de:00:00:{server_id[0:2]}:{server_id[2:4]}:{server_id[4:6]}",
        "routed_ip_enabled": True,
        "ipv6": None,
        "extra_networks": [],
        "dynamic_ip_required": bool(body.get("dynamic_ip_required", True)),
        "enable_ipv6": False,
        "private_ip": None,
        "creation_date": now,
        "modification_date": now,
        "bootscript": None,
        "location": None,
        "maintenances": [],
        "placement_group": None,
        "zone": zone,
        "filesystems": [],
        "end_of_service": False,
        "admin_password_encryption_ssh_key_id": None,
        "admin_password_encrypted_value": None,
        "dns": f"{server_id}.pub.instances.scw.cloud",
        "_volumes": {},
        "_security_group_id": security_group_id,
        "_user_data": {},
        "_on_gone": "server",
    }
    # The root volume: a local copy-on-write view of the image's root snapshot (recorded
    # only; a disk backend materialises it), or a Block volume when the root is an SBS
    # snapshot. `volumes.0` may resize it or replace its base.
    if root_tpl.get("id") and not image:
        server["_volumes"]["0"] = _extra_volume(cloud, zone, server, "0", root_tpl, who)
    elif root_type == "sbs_volume":
        server["_volumes"]["0"] = _block_volume_for(
            cloud,
            zone,
            server,
            name=root_tpl.get("name") or f"{name}-root",
            size=root_tpl.get("size"),
            snapshot_id=root_base,
            who=who,
        )
    else:
        size = root_tpl.get("size") or (image or {}).get("root_volume", {}).get("size") or 0
        if root_base and root_tpl.get("base_snapshot"):
            size = size or load(cloud, SNAPSHOT, zone, root_base, "instance_snapshot")["size"]
        root = new_volume(
            cloud,
            zone,
            name=root_tpl.get("name") or f"{name}-root",
            size=int(size) or 10 * 1000**3,
            body_owner=who,
            server=server,
            base_snapshot=root_base,
            boot=True,
        )
        server["_volumes"]["0"] = {"id": root["id"], "volume_type": "l_ssd"}
    if image:
        for slot, extra in (image.get("extra_volumes") or {}).items():
            if extra.get("volume_type") == "sbs_snapshot":
                server["_volumes"][str(slot)] = _block_volume_for(
                    cloud,
                    zone,
                    server,
                    name=f"{name}-vol-{slot}",
                    size=None,
                    snapshot_id=extra["id"],
                    who=who,
                )
                continue
            volume = new_volume(
                cloud,
                zone,
                name=f"{name}-vol-{slot}",
                size=extra.get("size", 0),
                body_owner=who,
                server=server,
                base_snapshot=extra.get("id"),
            )
            server["_volumes"][str(slot)] = {"id": volume["id"], "volume_type": "l_ssd"}
    for slot, tpl in sorted(volumes_tpl.items()):
        if slot != "0":
            server["_volumes"][str(slot)] = _extra_volume(cloud, zone, server, slot, tpl or {}, who)
    cloud.store.put(SERVER, server)
    for ip_id in [*list(body.get("public_ips") or []), body.get("public_ip")]:
        if ip_id:
            attach_ip(cloud, load(cloud, IP, zone, ip_id, "instance_ip"), server)
    if server["dynamic_ip_required"] and not body.get("public_ips") and not body.get("public_ip"):
        ip = new_ip(cloud, zone, type_="routed_ipv4", body_owner=who, tags=[], dynamic=True)
        attach_ip(cloud, ip, server)
    return ok({"server": render(cloud, server)}, status=201)


# --- read, update, delete -----------------------------------------------------------------


def get_server(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    return ok({"server": render(cloud, _load(cloud, zone, server_id))})


def list_servers(cloud: Any, request: Request, zone: str) -> Response:
    items = filter_owner(request, filter_tags(request, load_all(cloud, SERVER, zone)))
    name = request.arg("name")
    if name:
        items = [s for s in items if name in s["name"]]
    state = request.arg("state")
    if state:
        # The SDK enum says "stopped_in_place"; the API says "stopped in place".
        state = state.replace("_", " ") if state == "stopped_in_place" else state
        items = [s for s in items if s["state"] == state]
    for field in ("commercial_type",):
        wanted = request.arg(field)
        if wanted:
            items = [s for s in items if s[field] == wanted]
    ids = request.list_arg("servers")
    if ids:
        items = [s for s in items if s["id"] in ids]
    networks = request.list_arg("private_networks") + request.list_arg("private_network")
    macs = request.list_arg("private_nic_mac_address")
    if networks or macs:
        nics = cloud.store.all(PRIVATE_NIC, lambda n: n["zone"] == zone)
        keep = {
            n["server_id"]
            for n in nics
            if (not networks or n["private_network_id"] in networks)
            and (not macs or n["mac_address"] in macs)
        }
        items = [s for s in items if s["id"] in keep]
    rendered = [render(cloud, s) for s in items]
    with_ip, without_ip = request.flag("with_ip"), request.flag("without_ip")
    if with_ip:
        rendered = [s for s in rendered if s["public_ips"]]
    if without_ip:
        rendered = [s for s in rendered if not s["public_ips"]]
    if request.arg("order", "creation_date_desc") == "creation_date_desc":
        rendered.reverse()
    return page_of_instance_list(request, rendered, "servers", request.path)


def update_server(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = _load(cloud, zone, server_id)
    body = request.json()
    if body.get("name") is not None:
        server["name"] = str(body["name"])
    if body.get("tags") is not None:
        server["tags"] = check_tags(body["tags"])
    if body.get("boot_type") is not None:
        if body["boot_type"] not in BOOT_TYPES:
            raise invalid_argument("boot_type", "invalid_enum", "local or rescue")
        server["boot_type"] = body["boot_type"]
    if body.get("protected") is not None:
        server["protected"] = bool(body["protected"])
    if body.get("dynamic_ip_required") is not None:
        server["dynamic_ip_required"] = bool(body["dynamic_ip_required"])
    if body.get("security_group") is not None:
        group_id = (body["security_group"] or {}).get("id")
        load(cloud, SECURITY_GROUP, zone, group_id or "", "instance_security_group")
        server["_security_group_id"] = group_id
    if body.get("volumes") is not None:
        _set_volumes(cloud, zone, server, body["volumes"])
    if body.get("commercial_type") is not None:
        if server["state"] != "stopped":
            raise refuse("the server must be stopped to change its commercial type")
        if body["commercial_type"] not in products.names():
            raise refuse(f"{body['commercial_type']} is not a valid commercial type")
        server["commercial_type"] = body["commercial_type"]
    server["modification_date"] = cloud.clock.iso()
    cloud.store.put(SERVER, server)
    machine_capabilities.refresh(machines(cloud), server_id)  # e.g. another security group
    return ok({"server": render(cloud, server)})


def _set_volumes(cloud: Any, zone: str, server: dict[str, Any], wanted: Any) -> None:
    """`volumes` in an update is the server's whole set, by slot: volumes not named any more
    are detached (kept), new ones attached, the root stays."""
    if not isinstance(wanted, dict) or not all(
        isinstance(t, dict) and t.get("id") for t in wanted.values()
    ):
        raise invalid_argument("volumes", "invalid_type", "a map of slot to {id}")
    root = server["_volumes"].get("0", {}).get("id")
    if (wanted.get("0") or {}).get("id") != root:
        raise refuse("the root volume cannot be replaced")
    current = {ref["id"]: ref for ref in server["_volumes"].values()}
    ids = {tpl["id"] for tpl in wanted.values()}
    for volume_id, ref in current.items():
        if volume_id in ids:
            continue
        if ref["volume_type"] == "l_ssd":
            volume = cloud.store.get(VOLUME, volume_id)
            if volume:
                volume["server"] = None
                cloud.store.put(VOLUME, volume)
        else:
            _block_hook(cloud, zone, volume_id, server["id"], False)
    who = {"project": server["project"], "organization": server["organization"]}
    volumes: dict[str, dict[str, Any]] = {}
    for slot, tpl in sorted(wanted.items(), key=lambda item: int(item[0])):
        if tpl["id"] in current:
            volumes[str(slot)] = current[tpl["id"]]
        else:
            volumes[str(slot)] = _extra_volume(cloud, zone, server, str(slot), tpl, who)
    server["_volumes"] = volumes
    machine_capabilities.refresh(machines(cloud), server["id"])


def _release(cloud: Any, server: dict[str, Any], delete_local: bool) -> None:
    """Free what a server holds: local volumes (deleted by terminate, kept by delete),
    SBS volumes (detached), dynamic IPs (released), flexible IPs (detached), NICs."""
    zone = server["zone"]
    for ref in server["_volumes"].values():
        if ref["volume_type"] != "l_ssd":
            _block_hook(cloud, zone, ref["id"], server["id"], False)
            continue
        volume = cloud.store.get(VOLUME, ref["id"])
        if volume is None:
            continue
        if delete_local:
            cloud.store.delete(VOLUME, volume["id"])
        else:
            volume["server"] = None
            cloud.store.put(VOLUME, volume)
    for ip in cloud.store.all(IP, lambda i: _ip_on(i, server["id"])):
        if ip.get("_dynamic"):
            cloud.store.delete(IP, ip["id"])
        else:
            attach_ip(cloud, ip, None)
    for nic in cloud.store.all(PRIVATE_NIC, lambda n: n["server_id"] == server["id"]):
        delete_nic_record(cloud, nic)
    machines(cloud).delete(server)


@on_gone("server")
def _terminated(cloud: Any, server: dict[str, Any]) -> None:
    _release(cloud, server, delete_local=True)


def delete_server(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = _load(cloud, zone, server_id)
    if server["state"] not in STOPPED_STATES:
        raise refuse("instance must be stopped")
    if server["protected"]:
        raise refuse("server is protected; unprotect it first")
    cloud.store.delete(SERVER, server_id)
    _release(cloud, server, delete_local=False)
    return no_content()


# --- actions ------------------------------------------------------------------------------


def list_actions(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    return ok({"actions": allowed_actions(_load(cloud, zone, server_id)["state"])})


def _backup(cloud: Any, server: dict[str, Any], name: str | None) -> dict[str, Any]:
    """Snapshot every volume (local ones here, Block ones through the Block module) and
    make an image of them (creating -> available)."""
    zone = server["zone"]
    stamp = cloud.clock.now().strftime("%Y-%m-%d_%H-%M")
    image_name = name or f"image_{server['name']}_{stamp}"
    who = {"project": server["project"], "organization": server["organization"]}
    snapshots: dict[str, dict[str, Any]] = {}
    block_ids: list[str] = []
    for slot, ref in sorted(server["_volumes"].items()):
        if ref["volume_type"] != "l_ssd":
            snap = getattr(cloud, "block_snapshot_of_volume", None)
            if snap is None:
                continue
            made = snap(
                zone,
                {
                    "volume_id": ref["id"],
                    "name": f"{image_name}_snap_{slot}",
                    "project_id": server["project"],
                },
            )
            snapshots[slot] = {**made, "volume_type": "sbs_snapshot"}
            block_ids.append(made["id"])
            continue
        volume = cloud.store.get(VOLUME, ref["id"])
        if volume is None:
            continue
        snapshot = new_snapshot(
            cloud,
            zone,
            name=f"{image_name}_snap_{slot}",
            size=volume["size"],
            body_owner=who,
            tags=[],
            base_volume=volume,
            state="snapshotting",
            source_snapshot=volume.get("_base_snapshot"),
        )
        machine_capabilities.capture(machines(cloud), snapshot, volume, {"state": "available"})
        snapshots[slot] = cloud.store.put(SNAPSHOT, snapshot)
    snapshot_ids = [s["id"] for s in snapshots.values() if s["id"] not in block_ids]
    root = snapshots.pop("0")
    image = new_image(
        cloud,
        zone,
        name=image_name,
        arch=server["arch"],
        root=root,
        extra=snapshots,
        body_owner=who,
        tags=[],
        from_server=server["id"],
        state="creating",
    )
    machine_capabilities.follow(machines(cloud), image, snapshot_ids, {"state": "available"})
    stored: dict[str, Any] = cloud.store.put(IMAGE, image)
    return stored


def server_action(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = _load(cloud, zone, server_id)
    body = request.json()
    action = body.get("action") or "poweron"
    if action not in ACTIONS:
        raise invalid_argument("action", "invalid_enum", ", ".join(ACTIONS))
    allowed = allowed_actions(server["state"])
    if action not in allowed:
        raise refuse(
            f"action {action} is not allowed while the server is {server['state']}"
            f" (allowed: {', '.join(allowed) or 'none'})"
        )
    href_from, href_result = f"/servers/{server_id}/action", f"/servers/{server_id}"
    backend = machines(cloud)
    if action == "backup":
        image = _backup(cloud, server, body.get("name"))
        href_result = f"/images/{image['id']}"
    elif action == "terminate":
        if server["protected"]:
            raise refuse("server is protected; unprotect it first")
        backend.terminate(server)
    else:
        {
            "poweron": backend.power_on,
            "poweroff": backend.power_off,
            "stop_in_place": backend.stop_in_place,
            "reboot": backend.reboot,
        }[action](server)
    server["modification_date"] = cloud.clock.iso()
    cloud.store.put(SERVER, server)
    audit = getattr(cloud, "audit_record", None)
    if audit is not None:
        resource = {
            "id": server_id,
            "type": "instance_server",
            "name": server["name"],
            "created_at": server["creation_date"],
            "project": server["project"],
            "organization": server["organization"],
        }
        audit(zone, "ServerAction", request, 202, resource)
    return ok({"task": task(cloud, zone, href_from, href_result)}, status=202)


# --- user data ----------------------------------------------------------------------------


def list_user_data(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    return ok({"user_data": sorted(_load(cloud, zone, server_id)["_user_data"])})


def get_user_data(cloud: Any, request: Request, zone: str, server_id: str, key: str) -> Response:
    data = _load(cloud, zone, server_id)["_user_data"]
    if key not in data:
        raise not_found("instance_user_data", key)
    return Response(status=200, raw=base64.b64decode(data[key]), content_type="text/plain")


def set_user_data(cloud: Any, request: Request, zone: str, server_id: str, key: str) -> Response:
    server = _load(cloud, zone, server_id)
    server["_user_data"][key] = base64.b64encode(request.body).decode()
    cloud.store.put(SERVER, server)
    return no_content()


def delete_user_data(cloud: Any, request: Request, zone: str, server_id: str, key: str) -> Response:
    server = _load(cloud, zone, server_id)
    if server["_user_data"].pop(key, None) is None:
        raise not_found("instance_user_data", key)
    cloud.store.put(SERVER, server)
    return no_content()


# --- volumes on a server ------------------------------------------------------------------


def _block_hook(cloud: Any, zone: str, volume_id: str, server_id: str, attached: bool) -> None:
    hook = getattr(cloud, "block_volume_attached", None)
    if hook is not None:
        hook(zone, volume_id, server_id, attached)


def attach_volume(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = _load(cloud, zone, server_id)
    body = request.json()
    volume_id = require(body, "volume_id")
    if any(ref["id"] == volume_id for ref in server["_volumes"].values()):
        raise refuse(f"volume {volume_id} is already attached to this server")
    slot = str(next(i for i in range(1, 64) if str(i) not in server["_volumes"]))
    local = cloud.store.get(VOLUME, volume_id)
    volume_type = body.get("volume_type") or ("l_ssd" if local else "sbs_volume")
    template = {"id": volume_id, "volume_type": volume_type}
    who = {"project": server["project"], "organization": server["organization"]}
    server["_volumes"][slot] = _extra_volume(cloud, zone, server, slot, template, who)
    server["modification_date"] = cloud.clock.iso()
    cloud.store.put(SERVER, server)
    machine_capabilities.refresh(machines(cloud), server_id)  # hot-plugged when running
    return ok({"server": render(cloud, server)})


def detach_volume(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = _load(cloud, zone, server_id)
    volume_id = require(request.json(), "volume_id")
    for slot, ref in list(server["_volumes"].items()):
        if ref["id"] != volume_id:
            continue
        if slot == "0":
            raise refuse("the root volume cannot be detached")
        del server["_volumes"][slot]
        if ref["volume_type"] == "l_ssd":
            volume = cloud.store.get(VOLUME, volume_id)
            if volume:
                volume["server"] = None
                cloud.store.put(VOLUME, volume)
        else:
            _block_hook(cloud, zone, volume_id, server_id, False)
        server["modification_date"] = cloud.clock.iso()
        cloud.store.put(SERVER, server)
        machine_capabilities.refresh(machines(cloud), server_id)  # hot-unplugged when running
        return ok({"server": render(cloud, server)})
    raise refuse(f"volume {volume_id} is not attached to server {server_id}")


# --- types --------------------------------------------------------------------------------


def compatible_types(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = _load(cloud, zone, server_id)
    same_arch = [n for n in products.names() if products.arch_of(n) == server["arch"]]
    return ok({"compatible_types": [n for n in same_arch if n != server["commercial_type"]]})


def list_server_types(cloud: Any, request: Request, zone: str) -> Response:
    """A dict, not a list: everything on page 1, an empty dict past it."""
    names = products.names() if request.int_arg("page", 1) == 1 else []
    headers = {"X-Total-Count": str(len(products.names()))}
    return ok({"servers": {n: products.server_type(n) for n in names}}, 200, **headers)


def server_availability(cloud: Any, request: Request, zone: str) -> Response:
    """`GET /products/servers/availability`: every type localcloud offers is available."""
    return ok({"servers": {n: {"availability": "available"} for n in products.names()}})


def register(router: Any, wrap: Any) -> None:
    """Routes of servers, actions, user data, volumes on servers and server types."""
    one = "/servers/{server_id}"
    routes = [
        ("GET", "/products/servers", list_server_types),
        ("GET", "/products/servers/availability", server_availability),
        ("POST", "/servers", create_server),
        ("GET", "/servers", list_servers),
        ("GET", one, get_server),
        ("PATCH", one, update_server),
        ("DELETE", one, delete_server),
        ("GET", one + "/action", list_actions),
        ("POST", one + "/action", server_action),
        ("GET", one + "/user_data", list_user_data),
        ("GET", one + "/user_data/{key}", get_user_data),
        ("PATCH", one + "/user_data/{key}", set_user_data),
        ("DELETE", one + "/user_data/{key}", delete_user_data),
        ("POST", one + "/attach-volume", attach_volume),
        ("POST", one + "/detach-volume", detach_volume),
        ("GET", one + "/compatible-types", compatible_types),
    ]
    for method, path, handler in routes:
        router.add(method, BASE + path, wrap(handler))
