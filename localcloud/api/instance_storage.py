"""Instance v1 images, snapshots (from a local volume, or imported from Object Storage as
QCOW2) and local volumes.

Snapshot import checks, and when they answer:
- synchronous 400 `invalid_request_error` at create: `volume_type` not l_ssd, key without a
  .qcow/.qcow2 extension, `size` not a multiple of 512, no Object Storage in the region,
  missing bucket or object, and every QCOW2 header refusal with the documented messages
  (not a QCOW2, encrypted, zstd compression, backing chain, virtual size outside 1 GB..1 TB):
  the header is a few hundred bytes and is read while the object is copied, so the caller
  gets the documented error body at once;
- asynchronous (state `importing` -> `error` with `error_details`): a requested `size`
  smaller than the QCOW2's virtual size (a conversion failure on the real platform).
The copied object is kept in the store's blobs (`<snapshot id>.qcow2`), so an imported
snapshot and its images survive a restart even though moto's objects do not.

Deleting a snapshot that an image uses is refused with 400 `invalid_request_error` (the
spec documents no dedicated code; delete the image first, as Scaleway's docs say).
"""

from __future__ import annotations

import os
from typing import Any

from localcloud import machines as machine_capabilities
from localcloud import qcow2, s3
from localcloud.api.instance_common import (
    BASE,
    IMAGE,
    SNAPSHOT,
    VOLUME,
    check_name,
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
    region_of,
    require,
    task,
)
from localcloud.http import (
    Request,
    Response,
    invalid_argument,
    new_id,
    no_content,
    ok,
    page_of_instance_list,
    transient_state,
)

ARCHES = ("x86_64", "arm64", "arm")
IMPORT_EXTENSIONS = (".qcow", ".qcow2")


# --- images -------------------------------------------------------------------------------


def volume_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """How an image shows one of its snapshots (`root_volume`, `extra_volumes`)."""
    return {
        "id": snapshot["id"],
        "name": snapshot["name"],
        "volume_type": snapshot.get("volume_type", "l_ssd"),
        "size": snapshot.get("size", 0),
    }


def new_image(
    cloud: Any,
    zone: str,
    *,
    name: str,
    arch: str,
    root: dict[str, Any],
    extra: dict[str, dict[str, Any]],
    body_owner: dict[str, Any],
    tags: list[str],
    public_: bool = False,
    from_server: str = "",
    state: str = "available",
) -> dict[str, Any]:
    """Build and store an image record (also used by the server `backup` action)."""
    now = cloud.clock.iso()
    image = {
        "id": new_id(),
        "name": name,
        "arch": arch,
        "creation_date": now,
        "modification_date": now,
        "default_bootscript": None,
        "extra_volumes": {slot: volume_summary(snap) for slot, snap in extra.items()},
        "from_server": from_server,
        **body_owner,
        "public": public_,
        "root_volume": volume_summary(root),
        "state": state,
        "tags": tags,
        "zone": zone,
    }
    stored: dict[str, Any] = cloud.store.put(IMAGE, image)
    _block_snapshots_used(cloud, zone, image, True)
    return stored


def _block_snapshots_used(cloud: Any, zone: str, image: dict[str, Any], used: bool) -> None:
    """Tell the Block module which of its snapshots an image holds (or released)."""
    hook = getattr(cloud, "block_snapshot_used", None)
    if hook is None:
        return
    for volume in [image["root_volume"], *(image.get("extra_volumes") or {}).values()]:
        if volume.get("volume_type") == "sbs_snapshot":
            hook(zone, volume["id"], image["id"], used)


def _snapshot_for_image(cloud: Any, zone: str, snapshot_id: Any, field: str) -> dict[str, Any]:
    if not isinstance(snapshot_id, str) or not snapshot_id:
        raise invalid_argument(field)
    if cloud.store.get(SNAPSHOT, snapshot_id) is None:
        # A Block (SBS) snapshot, through the Block module's hook when it is there.
        lookup = getattr(cloud, "block_snapshot_lookup", None)
        block = lookup(zone, snapshot_id) if lookup else None
        if block is not None:
            if block.get("status") not in ("available", "in_use"):
                raise refuse(f"snapshot {snapshot_id} is not available")
            return {**block, "volume_type": "sbs_snapshot"}
    snapshot = load(cloud, SNAPSHOT, zone, snapshot_id, "instance_snapshot")
    if snapshot["state"] != "available":
        raise refuse(f"snapshot {snapshot_id} is not available (state {snapshot['state']})")
    return snapshot


def create_image(cloud: Any, request: Request, zone: str) -> Response:
    body = request.json()
    arch = require(body, "arch")
    if arch not in ARCHES:
        raise invalid_argument("arch", "invalid_enum", f"one of {', '.join(ARCHES)}")
    root = _snapshot_for_image(cloud, zone, body.get("root_volume"), "root_volume")
    extra = {
        str(slot): _snapshot_for_image(
            cloud, zone, (tpl or {}).get("id"), f"extra_volumes.{slot}.id"
        )
        for slot, tpl in (body.get("extra_volumes") or {}).items()
    }
    image = new_image(
        cloud,
        zone,
        name=check_name(body.get("name") or f"image-{root['name']}"),
        arch=arch,
        root=root,
        extra=extra,
        body_owner=owner(body),
        tags=check_tags(body.get("tags")),
        public_=bool(body.get("public", False)),
    )
    return ok({"image": public(image)}, status=201)


def get_image(cloud: Any, request: Request, zone: str, image_id: str) -> Response:
    return ok({"image": public(load(cloud, IMAGE, zone, image_id, "instance_image"))})


def list_images(cloud: Any, request: Request, zone: str) -> Response:
    items = filter_tags(request, filter_name(request, load_all(cloud, IMAGE, zone)))
    wants_public = request.flag("public")
    if wants_public is not None:
        items = [i for i in items if i["public"] == wants_public]
    arch = request.arg("arch")
    if arch:
        items = [i for i in items if i["arch"] == arch]
    items = filter_owner(request, items)
    return page_of_instance_list(request, [public(i) for i in items], "images", request.path)


def update_image(cloud: Any, request: Request, zone: str, image_id: str) -> Response:
    image = load(cloud, IMAGE, zone, image_id, "instance_image")
    body = request.json()
    if body.get("name") is not None:
        image["name"] = check_name(body["name"])
    if body.get("tags") is not None:
        image["tags"] = check_tags(body["tags"])
    if body.get("public") is not None:
        image["public"] = bool(body["public"])
    if body.get("arch") is not None:
        if body["arch"] not in ARCHES:
            raise invalid_argument("arch", "invalid_enum", f"one of {', '.join(ARCHES)}")
        image["arch"] = body["arch"]
    image["modification_date"] = cloud.clock.iso()
    cloud.store.put(IMAGE, image)
    return ok({"image": public(image)})


def delete_image(cloud: Any, request: Request, zone: str, image_id: str) -> Response:
    image = load(cloud, IMAGE, zone, image_id, "instance_image")
    cloud.store.delete(IMAGE, image_id)  # its snapshots stay, as on Scaleway
    _block_snapshots_used(cloud, zone, image, False)
    return no_content()


# --- snapshots ----------------------------------------------------------------------------


def new_snapshot(
    cloud: Any,
    zone: str,
    *,
    name: str,
    size: int,
    body_owner: dict[str, Any],
    tags: list[str],
    base_volume: dict[str, Any] | None,
    state: str,
    then: dict[str, Any] | None = None,
    source_snapshot: str | None = None,
    id_: str | None = None,
) -> dict[str, Any]:
    """Build and store a snapshot; `then` is the patch applied after one transition step."""
    now = cloud.clock.iso()
    snapshot = {
        "id": id_ or new_id(),
        "name": name,
        **body_owner,
        "volume_type": "l_ssd",
        "size": size,
        "state": state,
        "base_volume": (
            {"id": base_volume["id"], "name": base_volume["name"]} if base_volume else None
        ),
        "creation_date": now,
        "modification_date": now,
        "tags": tags,
        "zone": zone,
        "error_details": None,
        # What a disk backend needs to find the data (the volume's own base, if any).
        "_source_snapshot": source_snapshot,
    }
    if then:
        machines(cloud).schedule(snapshot, [then])
    stored: dict[str, Any] = cloud.store.put(SNAPSHOT, snapshot)
    return stored


def _import_snapshot(cloud: Any, zone: str, body: dict[str, Any]) -> dict[str, Any]:
    """The Object Storage import; see the module docstring for what is checked when."""
    bucket, key = require(body, "bucket"), require(body, "key")
    volume_type = body.get("volume_type") or "l_ssd"
    if volume_type != "l_ssd":
        raise refuse(f"volume_type {volume_type} cannot be imported here; use l_ssd")
    if not str(key).lower().endswith(IMPORT_EXTENSIONS):
        raise refuse("The object must have a .qcow or .qcow2 extension")
    size = body.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0 or size % 512):
        raise refuse("size must be a multiple of 512")
    region = region_of(zone)
    endpoint = cloud.s3_endpoints.get(region)
    if not endpoint:
        raise refuse(f"Object Storage is not available in region {region}")
    snapshot_id = new_id()
    blob = cloud.store.blob_path(f"{snapshot_id}.qcow2")

    try:
        s3.copy_object(endpoint, region, bucket, key, blob)
    except KeyError as exc:
        raise refuse(f"The object {key} was not found in bucket {bucket}") from exc
    try:
        header = qcow2.inspect(blob)
    except qcow2.Qcow2Error as exc:
        blob.unlink(missing_ok=True)
        raise refuse(str(exc)) from exc
    then: dict[str, Any] = {"state": "available"}
    if size is not None and size < header.virtual_size:
        then = {
            "state": "error",
            "error_details": "The requested size is smaller than the QCOW2 virtual size",
        }
    snapshot = new_snapshot(
        cloud,
        zone,
        name=check_name(body.get("name") or key.rsplit("/", 1)[-1]),
        size=size or header.virtual_size,
        body_owner=owner(body),
        tags=check_tags(body.get("tags")),
        base_volume=None,
        state="importing",
        then=then,
        id_=snapshot_id,  # chosen before the copy so the blob is named after it
        source_snapshot=snapshot_id,
    )
    return snapshot


def create_snapshot(cloud: Any, request: Request, zone: str) -> Response:
    body = request.json()
    if body.get("bucket") or body.get("key"):
        snapshot = _import_snapshot(cloud, zone, body)
    elif body.get("volume_id"):
        volume = load(cloud, VOLUME, zone, body["volume_id"], "instance_volume")
        # Hot (server running) and cold snapshots are both accepted: every type we list
        # has capabilities.hot_snapshots_local_volume.
        snapshot = new_snapshot(
            cloud,
            zone,
            name=check_name(body.get("name") or f"snap-{volume['name']}"),
            size=volume["size"],
            body_owner=owner(body),
            tags=check_tags(body.get("tags")),
            base_volume=volume,
            state="snapshotting",
            source_snapshot=volume.get("_base_snapshot"),
        )
        # The backend copies the data (a machine backend: hot when the server runs).
        machine_capabilities.capture(machines(cloud), snapshot, volume, {"state": "available"})
        cloud.store.put(SNAPSHOT, snapshot)
    else:
        raise invalid_argument("volume_id", help_message="volume_id, or bucket and key")
    href = f"snapshots/{snapshot['id']}"
    return ok(
        {
            "snapshot": public(snapshot),
            "task": task(cloud, zone, "/snapshots", href),
        },
        status=201,
    )


def _snapshot_data(cloud: Any, snapshot: dict[str, Any], scratch: Any) -> Any:
    """The snapshot's data as a QCOW2 file: its own blob (imported, or captured by a disk
    backend), else its source's, else an empty image of its size (nothing was written)."""
    blobs = [
        cloud.store.blob_path(f"{name}.qcow2")
        for name in (snapshot["id"], snapshot.get("_source_snapshot"))
        if name
    ]
    found = next((blob for blob in blobs if blob.exists()), None)
    try:
        return qcow2.data_or_empty(found, int(snapshot["size"]), scratch)
    except qcow2.Qcow2Error as exc:
        raise refuse(str(exc)) from exc


def export_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    """Write the snapshot as QCOW2 to `bucket`/`key` of the region's Object Storage: 202 and
    a task whose href_result is the object's URL; the snapshot is `exporting` meanwhile."""
    snapshot = load(cloud, SNAPSHOT, zone, snapshot_id, "instance_snapshot")
    body = request.json()
    bucket, key = require(body, "bucket"), require(body, "key")
    if snapshot["state"] != "available":
        raise transient_state("instance_snapshot", snapshot_id, snapshot["state"])
    region = region_of(zone)
    endpoint = cloud.s3_endpoints.get(region)
    if not endpoint:
        raise refuse(f"Object Storage is not available in region {region}")
    scratch = cloud.store.blob_path(f"export-{snapshot_id}-{os.getpid()}.qcow2")
    try:
        s3.put_file(endpoint, region, _snapshot_data(cloud, snapshot, scratch), bucket, key)
    except Exception as exc:  # boto3 wraps S3 errors in its own transfer exceptions
        raise refuse(f"cannot write to bucket {bucket}: {exc}") from exc
    finally:
        scratch.unlink(missing_ok=True)
    snapshot["state"] = "exporting"
    machines(cloud).schedule(snapshot, [{"state": "available"}])
    snapshot["modification_date"] = cloud.clock.iso()
    cloud.store.put(SNAPSHOT, snapshot)
    href = f"https://s3.{region}.scw.cloud/{bucket}/{key}"
    return ok({"task": task(cloud, zone, f"/snapshots/{snapshot_id}/export", href)}, status=202)


def get_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    return ok({"snapshot": public(load(cloud, SNAPSHOT, zone, snapshot_id, "instance_snapshot"))})


def list_snapshots(cloud: Any, request: Request, zone: str) -> Response:
    items = filter_owner(
        request, filter_tags(request, filter_name(request, load_all(cloud, SNAPSHOT, zone)))
    )
    base = request.arg("base_volume_id")
    if base:
        items = [i for i in items if (i.get("base_volume") or {}).get("id") == base]
    return page_of_instance_list(request, [public(i) for i in items], "snapshots", request.path)


def update_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    snapshot = load(cloud, SNAPSHOT, zone, snapshot_id, "instance_snapshot")
    body = request.json()
    if body.get("name") is not None:
        snapshot["name"] = check_name(body["name"])
    if body.get("tags") is not None:
        snapshot["tags"] = check_tags(body["tags"])
    snapshot["modification_date"] = cloud.clock.iso()
    cloud.store.put(SNAPSHOT, snapshot)
    return ok({"snapshot": public(snapshot)})


def delete_snapshot(cloud: Any, request: Request, zone: str, snapshot_id: str) -> Response:
    snapshot = load(cloud, SNAPSHOT, zone, snapshot_id, "instance_snapshot")
    if snapshot["state"] in ("importing", "snapshotting", "exporting"):
        raise transient_state("instance_snapshot", snapshot_id, snapshot["state"])
    for image in cloud.store.all(IMAGE):
        used = [image["root_volume"]["id"]] + [
            v["id"] for v in (image.get("extra_volumes") or {}).values()
        ]
        if snapshot_id in used:
            raise refuse(f"snapshot {snapshot_id} is used by image {image['id']}")
    cloud.store.delete(SNAPSHOT, snapshot_id)
    blob = cloud.store.blob_path(f"{snapshot_id}.qcow2")
    machine_capabilities.discard_blob(machines(cloud), blob)
    return no_content()


# --- local volumes ------------------------------------------------------------------------


def new_volume(
    cloud: Any,
    zone: str,
    *,
    name: str,
    size: int,
    body_owner: dict[str, Any],
    server: dict[str, Any] | None,
    base_snapshot: str | None,
    boot: bool = False,
) -> dict[str, Any]:
    """A local (l_ssd) volume; `_base_snapshot` records the copy-on-write base."""
    now = cloud.clock.iso()
    volume = {
        "id": new_id(),
        "name": name,
        "volume_type": "l_ssd",
        "export_uri": None,
        **body_owner,
        "server": {"id": server["id"], "name": server["name"]} if server else None,
        "size": size,
        "state": "available",
        "creation_date": now,
        "modification_date": now,
        "tags": [],
        "zone": zone,
        "_base_snapshot": base_snapshot,
        "_boot": boot,
    }
    stored: dict[str, Any] = cloud.store.put(VOLUME, volume)
    return stored


def create_volume(cloud: Any, request: Request, zone: str) -> Response:
    """A detached local volume: empty (`size`) or from an Instance snapshot
    (`base_snapshot`, optional `size`), or a copy of another local volume (`base_volume`).
    Only `l_ssd`: `b_ssd` (and other types) are refused; Block volumes live in the Block API.
    Scaleway answers 201 with the volume already `available`."""
    body = request.json()
    volume_type = body.get("volume_type") or "l_ssd"
    if volume_type != "l_ssd":
        raise invalid_argument(
            "volume_type",
            "invalid_enum",
            f"volume type {volume_type} is not supported anymore: use l_ssd, or sbs_volume "
            "through the Block Storage API",
        )
    sources = [k for k in ("size", "base_snapshot", "base_volume") if body.get(k)]
    if not sources:
        raise invalid_argument("size", help_message="one of size, base_snapshot, base_volume")
    size = body.get("size")
    base = None
    if body.get("base_snapshot"):
        snapshot = load(cloud, SNAPSHOT, zone, body["base_snapshot"], "instance_snapshot")
        if snapshot["state"] != "available":
            raise transient_state("instance_snapshot", snapshot["id"], snapshot["state"])
        base = snapshot["id"]
        size = size or snapshot["size"]
    elif body.get("base_volume"):
        source = load(cloud, VOLUME, zone, body["base_volume"], "instance_volume")
        base = source.get("_base_snapshot")
        size = size or source["size"]
    if not isinstance(size, int) or size <= 0:
        raise invalid_argument("size", "invalid_int", "size in bytes")
    volume = new_volume(
        cloud,
        zone,
        name=check_name(body.get("name") or f"vol-{new_id()[:8]}"),
        size=size,
        body_owner=owner(body),
        server=None,
        base_snapshot=base,
    )
    volume["tags"] = check_tags(body.get("tags"))
    cloud.store.put(VOLUME, volume)
    return ok({"volume": public(volume)}, status=201)


def update_volume(cloud: Any, request: Request, zone: str, volume_id: str) -> Response:
    """Name and tags; a local volume cannot be resized (only Block volumes grow)."""
    volume = load(cloud, VOLUME, zone, volume_id, "instance_volume")
    body = request.json()
    if body.get("name") is not None:
        volume["name"] = check_name(body["name"])
    if body.get("tags") is not None:
        volume["tags"] = check_tags(body["tags"])
    if body.get("size") is not None and body["size"] != volume["size"]:
        raise refuse("only block volumes can be resized")
    volume["modification_date"] = cloud.clock.iso()
    cloud.store.put(VOLUME, volume)
    return ok({"volume": public(volume)})


def list_volumes(cloud: Any, request: Request, zone: str) -> Response:
    items = filter_owner(
        request, filter_tags(request, filter_name(request, load_all(cloud, VOLUME, zone)))
    )
    volume_type = request.arg("volume_type")
    if volume_type:
        items = [i for i in items if i["volume_type"] == volume_type]
    return page_of_instance_list(request, [public(i) for i in items], "volumes", request.path)


def get_volume(cloud: Any, request: Request, zone: str, volume_id: str) -> Response:
    return ok({"volume": public(load(cloud, VOLUME, zone, volume_id, "instance_volume"))})


def delete_volume(cloud: Any, request: Request, zone: str, volume_id: str) -> Response:
    volume = load(cloud, VOLUME, zone, volume_id, "instance_volume")
    if volume.get("server"):
        raise refuse("a volume attached to a server cannot be deleted")
    cloud.store.delete(VOLUME, volume_id)
    machine_capabilities.volume_deleted(machines(cloud), volume_id)
    return no_content()


def register(router: Any, wrap: Any) -> None:
    """Routes of images, snapshots and volumes; `wrap` adds zone checks and locking."""
    routes = [
        ("POST", "/images", create_image),
        ("GET", "/images", list_images),
        ("GET", "/images/{image_id}", get_image),
        ("PATCH", "/images/{image_id}", update_image),
        ("DELETE", "/images/{image_id}", delete_image),
        ("POST", "/snapshots", create_snapshot),
        ("GET", "/snapshots", list_snapshots),
        ("GET", "/snapshots/{snapshot_id}", get_snapshot),
        ("PATCH", "/snapshots/{snapshot_id}", update_snapshot),
        ("DELETE", "/snapshots/{snapshot_id}", delete_snapshot),
        ("POST", "/snapshots/{snapshot_id}/export", export_snapshot),
        ("POST", "/volumes", create_volume),
        ("GET", "/volumes", list_volumes),
        ("PATCH", "/volumes/{volume_id}", update_volume),
        ("GET", "/volumes/{volume_id}", get_volume),
        ("DELETE", "/volumes/{volume_id}", delete_volume),
    ]
    for method, path, handler in routes:
        router.add(method, BASE + path, wrap(handler))
