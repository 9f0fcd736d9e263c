"""Block Storage v1 (SBS): volumes and snapshots, `/block/v1/zones/{zone}/...`.

Shapes follow the SDK's `scaleway.block.v1` marshalling (bare objects, `total_count` in list
bodies, create -> 200, delete -> 204). Transient statuses (`creating`, `exporting`) settle
lazily: each resource stores when it becomes stable, and every read applies that with
localcloud's clock, so there is no background thread and a shifted clock is honoured.

Hooks published by `install(cloud)` (see `LocalCloud.add_hook`):

- `block_volume_attached(zone, volume_id, server_id, attached) -> dict`: the Instance API
  marks a volume in use by a server (or frees it); returns the public volume.
- `block_volume_for_server(zone, server_id=, name=, size=, snapshot_id=, project_id=) -> dict`:
  a Block volume the Instance API makes for a server (see `volume_for_server`).
- `block_snapshot_used(zone, snapshot_id, image_id, used)`: an Instance image holds (or
  released) a Block snapshot.
- `block_snapshot_of_volume(zone, {"volume_id", "name", "project_id"}) -> dict`: a new
  snapshot of a Block volume (the Instance backup action).
- `block_volume_lookup(zone, volume_id) -> dict | None` and
  `block_snapshot_lookup(zone, snapshot_id) -> dict | None`: the public resource plus
  `"blob_path"` (str or None), the QCOW2 file holding its data when it has one.

Hooks called on `cloud` when a machine backend that keeps volume data publishes them:
- `block_volume_capture(volume_id, target: Path) -> bool`: copy the volume's current data to
  `target` for a new snapshot (False: the volume holds no data of its own yet);
- `block_volume_disk_deleted(volume_id)`: the volume record is gone, so is its data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from localcloud import qcow2, s3
from localcloud.http import (
    ApiError,
    Request,
    Response,
    invalid_argument,
    invalid_request,
    new_id,
    no_content,
    not_found,
    ok,
    page_of_list,
    transient_state,
)

BASE = "/block/v1/zones/{zone}"
VOLUME = "block_volume"
SNAPSHOT = "block_snapshot"
IOPS_TYPES = {5000: "sbs_5k", 15000: "sbs_15k"}
DEFAULT_PROJECT = "00000000-0000-0000-0000-000000000000"
QCOW2_EXTENSIONS = (".qcow", ".qcow2")


# --- helpers ----------------------------------------------------------------------------------


def _transition_seconds(cloud: Any) -> float:
    """`cloud.transition_seconds` when set (tests shorten it), else 1 s."""
    value = getattr(cloud, "transition_seconds", None)
    return 1.0 if value is None else float(value)


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The API view: internal bookkeeping keys start with an underscore."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _schedule(cloud: Any, obj: dict[str, Any], status: str) -> None:
    """Make `obj` reach `status` after the transition delay (applied lazily on read)."""
    obj["_settle_at"] = cloud.clock.timestamp() + _transition_seconds(cloud)
    obj["_settle_to"] = status


def _settle(cloud: Any, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Apply a due transition (and the changes it waited for) and persist it."""
    due = obj.get("_settle_at")
    if due is not None and cloud.clock.timestamp() >= due:
        obj["status"] = obj.pop("_settle_to")
        obj.update(obj.pop("_settle_patch", None) or {})
        obj.pop("_settle_at")
        obj["updated_at"] = cloud.clock.iso()
        cloud.store.put(kind, obj)
    return obj


def _load(cloud: Any, kind: str, zone: str, id_: str, resource: str) -> dict[str, Any]:
    obj = cloud.store.get(kind, id_)
    if obj is None or obj.get("zone") != zone:
        raise not_found(resource, id_)
    return _settle(cloud, kind, obj)


def _listing(cloud: Any, kind: str, zone: str) -> list[dict[str, Any]]:
    return [_settle(cloud, kind, o) for o in cloud.store.all(kind, lambda o: o["zone"] == zone)]


def _order(items: list[dict[str, Any]], order_by: str | None) -> list[dict[str, Any]]:
    field, _, direction = (order_by or "created_at_asc").rpartition("_")
    if field not in ("created_at", "name"):
        field = "created_at"
    return sorted(items, key=lambda o: o.get(field) or "", reverse=direction == "desc")


def _filter_common(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """name (substring), tags (any of), project_id; organization_id is not filtered on because
    localcloud has no organizations (the SDK always sends the client's default)."""
    name = request.arg("name")
    tags = set(request.list_arg("tags"))
    project = request.arg("project_id")
    if name:
        items = [o for o in items if name in (o.get("name") or "")]
    if tags:
        items = [o for o in items if tags & set(o.get("tags") or [])]
    if project:
        items = [o for o in items if o.get("project_id") == project]
    return items


def _size(value: Any, name: str) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError) as exc:
        raise invalid_argument(name, "invalid_int", "the size must be a number of bytes") from exc
    if size <= 0:
        raise invalid_argument(name, "out_of_range", "the size must be positive")
    return size


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _blob_in_use(cloud: Any, blob: str, except_id: str) -> bool:
    for kind in (VOLUME, SNAPSHOT):
        for obj in cloud.store.all(kind, lambda o: o.get("_blob") == blob):
            if obj["id"] != except_id:
                return True
    return False


def _drop_blob(cloud: Any, obj: dict[str, Any]) -> None:
    """Remove the resource's data file unless another volume or snapshot still shares it."""
    blob = obj.get("_blob")
    if blob and not _blob_in_use(cloud, blob, obj["id"]):
        Path(blob).unlink(missing_ok=True)


def _precondition_in_use(message: str) -> ApiError:
    # The shape of the real 412 (scaleway-sdk-go PreconditionFailedError, terraform #3243).
    return ApiError(
        412,
        "precondition_failed",
        "precondition is not respected",
        precondition="resource_still_in_use",
        help_message=message,
    )


# --- volumes ----------------------------------------------------------------------------------


def list_volumes(cloud: Any, request: Request, zone: str) -> Response:
    items = _filter_common(request, _listing(cloud, VOLUME, zone))
    if request.arg("product_resource_id"):
        rid = request.arg("product_resource_id")
        items = [v for v in items if any(r["product_resource_id"] == rid for r in v["references"])]
    if request.arg("volume_type"):
        items = [v for v in items if v["type"] == request.arg("volume_type")]
    if request.list_arg("volume_ids"):
        wanted = set(request.list_arg("volume_ids"))
        items = [v for v in items if v["id"] in wanted]
    items = _order(items, request.arg("order_by"))
    return page_of_list(request, [_public(v) for v in items], "volumes")


def create_volume(cloud: Any, request: Request, zone: str) -> Response:
    data = request.json()
    iops = data.get("perf_iops") or 5000
    if iops not in IOPS_TYPES:
        raise invalid_argument("perf_iops", "invalid_value", "perf_iops must be 5000 or 15000")
    blob = None
    parent = None
    if data.get("from_empty") is not None:
        size = _size((data["from_empty"] or {}).get("size"), "from_empty.size")
    elif data.get("from_snapshot") is not None:
        source = data["from_snapshot"] or {}
        if not source.get("snapshot_id"):
            raise invalid_argument("from_snapshot.snapshot_id")
        snapshot = _load(cloud, SNAPSHOT, zone, source["snapshot_id"], "snapshot")
        if snapshot["status"] not in ("available", "in_use"):
            raise transient_state("snapshot", snapshot["id"], snapshot["status"])
        size = snapshot["size"]
        if source.get("size"):  # the SDK sends 0 when no size is given
            size = _size(source["size"], "from_snapshot.size")
            if size < snapshot["size"]:
                raise invalid_argument(
                    "from_snapshot.size", "out_of_range", "must be at least the snapshot's size"
                )
        blob = snapshot.get("_blob")
        parent = snapshot["id"]
    else:
        raise invalid_argument("from_empty", help_message="one of from_empty, from_snapshot")
    now = cloud.clock.iso()
    volume = {
        "id": new_id(),
        "name": data.get("name") or f"vol-{new_id()[:8]}",
        "type": IOPS_TYPES[iops],
        "size": size,
        "project_id": data.get("project_id") or DEFAULT_PROJECT,
        "created_at": now,
        "updated_at": now,
        "references": [],
        "parent_snapshot_id": parent,
        "status": "creating",
        "tags": list(data.get("tags") or []),
        "zone": zone,
        "specs": {"perf_iops": iops, "class": "sbs"},
        "last_detached_at": None,
        "kms_key_id": data.get("kms_key_id"),
        "_blob": blob,
    }
    _schedule(cloud, volume, "available")
    cloud.store.put(VOLUME, volume)
    return ok(_public(volume))


def get_volume(cloud: Any, request: Request, zone: str, volume_id: str) -> Response:
    return ok(_public(_load(cloud, VOLUME, zone, volume_id, "volume")))


def update_volume(cloud: Any, request: Request, zone: str, volume_id: str) -> Response:
    data = request.json()
    with cloud.store.lock:
        volume = _load(cloud, VOLUME, zone, volume_id, "volume")
        if data.get("name") is not None:
            volume["name"] = data["name"]
        if data.get("tags") is not None:
            volume["tags"] = list(data["tags"])
        # A new size or performance class is applied by an `updating` transition: Scaleway
        # answers the PATCH with the old type and status `updating`, the new one after.
        change: dict[str, Any] = {}
        if data.get("size") is not None:
            size = _size(data["size"], "size")
            if size < volume["size"]:
                raise invalid_argument("size", "out_of_range", "a volume can only grow")
            if size != volume["size"]:
                volume["size"] = size
                change["size"] = size
        if data.get("perf_iops") is not None:
            if data["perf_iops"] not in IOPS_TYPES:
                raise invalid_argument("perf_iops", "invalid_value", "must be 5000 or 15000")
            if data["perf_iops"] != volume["specs"]["perf_iops"]:
                change["specs"] = {**volume["specs"], "perf_iops": data["perf_iops"]}
                change["type"] = IOPS_TYPES[data["perf_iops"]]
        if change and volume["status"] in ("available", "in_use", "updating"):
            # A second change during an update joins it (the type changes when it ends).
            settled = volume.get("_settle_to") if volume["status"] == "updating" else None
            _schedule(cloud, volume, settled or volume["status"])
            volume["_settle_patch"] = {
                **(volume.get("_settle_patch") or {}),
                **{k: v for k, v in change.items() if k != "size"},
            }
            volume["status"] = "updating"
        elif change:
            volume.update(change)
        volume["updated_at"] = cloud.clock.iso()
        cloud.store.put(VOLUME, volume)
    return ok(_public(volume))


def delete_volume(cloud: Any, request: Request, zone: str, volume_id: str) -> Response:
    with cloud.store.lock:
        volume = _load(cloud, VOLUME, zone, volume_id, "volume")
        if volume["status"] == "in_use" or volume["references"]:
            raise _precondition_in_use("the volume is attached: detach it first")
        if volume["status"] in ("creating", "snapshotting", "resizing", "updating"):
            raise transient_state("volume", volume_id, volume["status"])
        _drop_blob(cloud, volume)
        cloud.store.delete(VOLUME, volume_id)
    deleted = getattr(cloud, "block_volume_disk_deleted", None)
    if deleted is not None:
        deleted(volume_id)
    return no_content()


# --- snapshots --------------------------------------------------------------------------------


def _new_snapshot(
    cloud: Any, zone: str, data: dict[str, Any], size: int, parent: dict[str, Any] | None
) -> dict[str, Any]:
    now = cloud.clock.iso()
    return {
        "id": new_id(),
        "name": data.get("name") or f"snp-{new_id()[:8]}",
        "parent_volume": parent,
        "size": size,
        "project_id": data.get("project_id") or DEFAULT_PROJECT,
        "created_at": now,
        "updated_at": now,
        "references": [],
        "status": "creating",
        "tags": list(data.get("tags") or []),
        "class": "sbs",
        "zone": zone,
        "public": bool(data.get("public", False)),
        "kms_key_id": None,
    }


def list_snapshots(cloud: Any, request: Request, zone: str) -> Response:
    items = _filter_common(request, _listing(cloud, SNAPSHOT, zone))
    volume_id = request.arg("volume_id")
    if volume_id:
        items = [s for s in items if (s.get("parent_volume") or {}).get("id") == volume_id]
    items = _order(items, request.arg("order_by"))
    return page_of_list(request, [_public(s) for s in items], "snapshots")


def create_snapshot(cloud: Any, request: Request, zone: str) -> Response:
    data = request.json()
    if not data.get("volume_id"):
        raise invalid_argument("volume_id")
    return ok(snapshot_of_volume(cloud, zone, data))


def snapshot_of_volume(cloud: Any, zone: str, data: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of `data["volume_id"]` (`name`, `project_id`, `tags` as the create body
    gives them): `creating`, then `available`. Also the Instance backup action's way to
    snapshot a server's Block volumes."""
    volume = _load(cloud, VOLUME, zone, data["volume_id"], "volume")
    # A hot snapshot (volume in use) is allowed, as on Scaleway.
    if volume["status"] not in ("available", "in_use"):
        raise transient_state("volume", volume["id"], volume["status"])
    parent = {
        "id": volume["id"],
        "name": volume["name"],
        "type": volume["type"],
        "status": volume["status"],
    }
    snapshot = _new_snapshot(cloud, zone, data, volume["size"], parent)
    snapshot["_blob"] = volume.get("_blob")
    capture = getattr(cloud, "block_volume_capture", None)
    if capture is not None:
        target = cloud.store.blob_path(f"block-{snapshot['id']}.qcow2")
        if capture(volume["id"], target):
            snapshot["_blob"] = str(target)
    _schedule(cloud, snapshot, "available")
    cloud.store.put(SNAPSHOT, snapshot)
    return _public(snapshot)


def import_snapshot(cloud: Any, request: Request, zone: str) -> Response:
    """Copy a QCOW2 object from the region's Object Storage and check it as Scaleway does."""

    data = request.json()
    for name in ("bucket", "key", "name"):
        if not data.get(name):
            raise invalid_argument(name)
    bucket, key = data["bucket"], data["key"]
    if not key.lower().endswith(QCOW2_EXTENSIONS):
        raise invalid_request("The object must have a .qcow or .qcow2 extension")
    endpoint = cloud.s3_endpoints.get(_region(zone))
    if not endpoint:
        raise invalid_request(f"Object Storage is not available in region {_region(zone)}")
    snapshot = _new_snapshot(cloud, zone, data, 0, None)
    target = cloud.store.blob_path(f"block-{snapshot['id']}.qcow2")
    try:
        s3.copy_object(endpoint, _region(zone), bucket, key, target)
    except KeyError as exc:
        raise invalid_request(f"The object {key} was not found in bucket {bucket}") from exc
    try:
        header = qcow2.inspect(target)
    except qcow2.Qcow2Error as exc:
        target.unlink(missing_ok=True)
        raise invalid_request(str(exc)) from exc
    size = header.virtual_size
    if data.get("size") is not None:
        size = _size(data["size"], "size")
        if size < header.virtual_size:
            target.unlink(missing_ok=True)
            raise invalid_request("The size must be at least the QCOW2's virtual size")
    snapshot["size"] = size
    snapshot["_blob"] = str(target)
    _schedule(cloud, snapshot, "available")
    cloud.store.put(SNAPSHOT, snapshot)
    return ok(_public(snapshot))


def _qcow2_for(snapshot: dict[str, Any], scratch: Path) -> Path:
    """The snapshot's data as QCOW2: its blob, or an empty image of its size."""
    blob = Path(snapshot["_blob"]) if snapshot.get("_blob") else None
    try:
        return qcow2.data_or_empty(blob, int(snapshot["size"]), scratch)
    except qcow2.Qcow2Error as exc:
        raise invalid_request(str(exc)) from exc


def export_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    from botocore.exceptions import ClientError

    data = request.json()
    for name in ("bucket", "key"):
        if not data.get(name):
            raise invalid_argument(name)
    snapshot = _load(cloud, SNAPSHOT, zone, snapshot_id, "snapshot")
    if snapshot["status"] not in ("available", "in_use"):
        raise transient_state("snapshot", snapshot_id, snapshot["status"])
    endpoint = cloud.s3_endpoints.get(_region(zone))
    if not endpoint:
        raise invalid_request(f"Object Storage is not available in region {_region(zone)}")
    scratch = cloud.store.blob_path(f"export-{snapshot_id}-{os.getpid()}.qcow2")
    try:
        s3.put_file(
            endpoint, _region(zone), _qcow2_for(snapshot, scratch), data["bucket"], data["key"]
        )
    except ClientError as exc:
        raise invalid_request(f"cannot write to bucket {data['bucket']}: {exc}") from exc
    except Exception as exc:  # boto3 wraps S3 errors in its own transfer exceptions
        if "NoSuchBucket" in str(exc):
            raise invalid_request(f"The bucket {data['bucket']} does not exist") from exc
        raise
    finally:
        scratch.unlink(missing_ok=True)
    snapshot["status"] = "exporting"
    snapshot["updated_at"] = cloud.clock.iso()
    _schedule(cloud, snapshot, "available")
    cloud.store.put(SNAPSHOT, snapshot)
    return ok(_public(snapshot))


def get_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    return ok(_public(_load(cloud, SNAPSHOT, zone, snapshot_id, "snapshot")))


def update_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    data = request.json()
    with cloud.store.lock:
        snapshot = _load(cloud, SNAPSHOT, zone, snapshot_id, "snapshot")
        for name in ("name", "public"):
            if data.get(name) is not None:
                snapshot[name] = data[name]
        if data.get("tags") is not None:
            snapshot["tags"] = list(data["tags"])
        snapshot["updated_at"] = cloud.clock.iso()
        cloud.store.put(SNAPSHOT, snapshot)
    return ok(_public(snapshot))


def delete_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    with cloud.store.lock:
        snapshot = _load(cloud, SNAPSHOT, zone, snapshot_id, "snapshot")
        if snapshot["references"]:
            raise _precondition_in_use("the snapshot is in use")
        if snapshot["status"] in ("creating", "exporting"):
            raise transient_state("snapshot", snapshot_id, snapshot["status"])
        _drop_blob(cloud, snapshot)
        cloud.store.delete(SNAPSHOT, snapshot_id)
    return no_content()


def list_volume_types(cloud: Any, request: Request, zone: str) -> Response:
    types = [
        {
            "type": name,
            "zone": zone,
            "pricing": None,
            "snapshot_pricing": None,
            "specs": {"perf_iops": iops, "class": "sbs"},
        }
        for iops, name in IOPS_TYPES.items()
    ]
    return page_of_list(request, types, "volume_types")


# --- hooks for the Instance API ---------------------------------------------------------------


def volume_attached(
    cloud: Any, zone: str, volume_id: str, server_id: str, attached: bool
) -> dict[str, Any]:
    """Mark a volume attached to (or detached from) a server; return the public volume.

    Raises ApiError: 404 `volume` if unknown in that zone; 409 transient_state if it is still
    being created; 412 precondition_failed if it is already attached to another server.
    """
    with cloud.store.lock:
        volume = _load(cloud, VOLUME, zone, volume_id, "volume")
        now = cloud.clock.iso()
        if attached:
            current = [r for r in volume["references"] if r["product_resource_id"] != server_id]
            if current:
                raise _precondition_in_use(
                    f"the volume is already attached to {current[0]['product_resource_id']}"
                )
            if volume["status"] not in ("available", "in_use"):
                raise transient_state("volume", volume_id, volume["status"])
            if not volume["references"]:
                volume["references"] = [
                    {
                        "id": new_id(),
                        "product_resource_type": "instance_server",
                        "product_resource_id": server_id,
                        "created_at": now,
                        "type": "exclusive",
                        "status": "attached",
                    }
                ]
            volume["status"] = "in_use"
        else:
            had = bool(volume["references"])
            volume["references"] = [
                r for r in volume["references"] if r["product_resource_id"] != server_id
            ]
            if not volume["references"]:
                volume["status"] = "available"
                if had:
                    volume["last_detached_at"] = now
        volume["updated_at"] = now
        cloud.store.put(VOLUME, volume)
    return _public(volume)


def snapshot_used(cloud: Any, zone: str, snapshot_id: str, image_id: str, used: bool) -> None:
    """An Instance image starts (or stops) using a Block snapshot: the snapshot is `in_use`
    with an `attached` reference while an image holds it, as Scaleway shows it."""
    with cloud.store.lock:
        snapshot = cloud.store.get(SNAPSHOT, snapshot_id)
        if snapshot is None or snapshot.get("zone") != zone:
            return
        snapshot = _settle(cloud, SNAPSHOT, snapshot)
        now = cloud.clock.iso()
        others = [r for r in snapshot["references"] if r["product_resource_id"] != image_id]
        if used:
            others.append(
                {
                    "id": new_id(),
                    "product_resource_type": "instance_image",
                    "product_resource_id": image_id,
                    "created_at": now,
                    "type": "link",
                    "status": "attached",
                }
            )
        snapshot["references"] = others
        if snapshot["status"] in ("available", "in_use"):
            snapshot["status"] = "in_use" if others else "available"
        snapshot["updated_at"] = now
        cloud.store.put(SNAPSHOT, snapshot)


def volume_for_server(
    cloud: Any,
    zone: str,
    *,
    server_id: str,
    name: str,
    size: int | None,
    snapshot_id: str | None,
    project_id: str,
) -> dict[str, Any]:
    """A Block volume made by the Instance API for a server (its root from an SBS image, or
    an `sbs_volume` entry of the create body): from a Block snapshot or empty, attached at
    once (status `in_use`, one `attached` reference), as Scaleway shows it right after the
    server's creation.

    Raises ApiError: 404 `snapshot` if the snapshot is unknown in that zone, 409
    transient_state if it is not available yet, 400 if `size` is below the snapshot's.
    """
    with cloud.store.lock:
        blob = None
        if snapshot_id:
            snapshot = _load(cloud, SNAPSHOT, zone, snapshot_id, "snapshot")
            if snapshot["status"] not in ("available", "in_use"):
                raise transient_state("snapshot", snapshot_id, snapshot["status"])
            if size and size < snapshot["size"]:
                raise invalid_argument(
                    "volumes.size", "out_of_range", "must be at least the snapshot's size"
                )
            size = size or snapshot["size"]
            blob = snapshot.get("_blob")
        if not size:
            raise invalid_argument("volumes.size", help_message="size in bytes")
        now = cloud.clock.iso()
        volume = {
            "id": new_id(),
            "name": name,
            "type": IOPS_TYPES[5000],
            "size": int(size),
            "project_id": project_id,
            "created_at": now,
            "updated_at": now,
            "references": [
                {
                    "id": new_id(),
                    "product_resource_type": "instance_server",
                    "product_resource_id": server_id,
                    "created_at": now,
                    "type": "exclusive",
                    "status": "attached",
                }
            ],
            "parent_snapshot_id": snapshot_id,
            "status": "in_use",
            "tags": [],
            "zone": zone,
            "specs": {"perf_iops": 5000, "class": "sbs"},
            "last_detached_at": None,
            "kms_key_id": None,
            "_blob": blob,
        }
        cloud.store.put(VOLUME, volume)
    return _public(volume)


def _lookup(cloud: Any, kind: str, zone: str, id_: str) -> dict[str, Any] | None:
    obj = cloud.store.get(kind, id_)
    if obj is None or obj.get("zone") != zone:
        return None
    obj = _settle(cloud, kind, obj)
    return {**_public(obj), "blob_path": obj.get("_blob")}


def install(cloud: Any) -> None:
    """Publish the hooks the Instance API calls (see the module docstring)."""
    cloud.add_hook(
        "block_volume_attached",
        lambda zone, vid, sid, attached: volume_attached(cloud, zone, vid, sid, attached),
    )
    cloud.add_hook("block_volume_lookup", lambda zone, vid: _lookup(cloud, VOLUME, zone, vid))
    cloud.add_hook(
        "block_snapshot_used",
        lambda zone, sid, image_id, used: snapshot_used(cloud, zone, sid, image_id, used),
    )
    cloud.add_hook(
        "block_snapshot_of_volume",
        lambda zone, data: snapshot_of_volume(cloud, zone, data),
    )
    cloud.add_hook(
        "block_volume_for_server",
        lambda zone, **kwargs: volume_for_server(cloud, zone, **kwargs),
    )
    cloud.add_hook("block_snapshot_lookup", lambda zone, sid: _lookup(cloud, SNAPSHOT, zone, sid))


def register(router: Any) -> None:
    """Every route under `v1` and, for the Terraform provider and older SDKs, `v1alpha1`
    (the same resources; v1alpha1 also names the import `import-from-s3`)."""
    for version in ("v1", "v1alpha1"):
        _register(router, BASE.replace("/v1/", f"/{version}/"))
    router.add(
        "POST",
        BASE.replace("/v1/", "/v1alpha1/") + "/snapshots/import-from-s3",
        import_snapshot,
    )


def _register(router: Any, base: str) -> None:
    router.add("GET", f"{base}/volume-types", list_volume_types)
    router.add("GET", f"{base}/volumes", list_volumes)
    router.add("POST", f"{base}/volumes", create_volume)
    router.add("GET", f"{base}/volumes/{{volume_id}}", get_volume)
    router.add("PATCH", f"{base}/volumes/{{volume_id}}", update_volume)
    router.add("DELETE", f"{base}/volumes/{{volume_id}}", delete_volume)
    router.add("GET", f"{base}/snapshots", list_snapshots)
    router.add("POST", f"{base}/snapshots", create_snapshot)
    router.add("POST", f"{base}/snapshots/import-from-object-storage", import_snapshot)
    router.add("GET", f"{base}/snapshots/{{snapshot_id}}", get_snapshot)
    router.add("PATCH", f"{base}/snapshots/{{snapshot_id}}", update_snapshot)
    router.add("DELETE", f"{base}/snapshots/{{snapshot_id}}", delete_snapshot)
    router.add(
        "POST", f"{base}/snapshots/{{snapshot_id}}/export-to-object-storage", export_snapshot
    )
