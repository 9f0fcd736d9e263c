"""Publishing a version: its QCOW2 becomes an instance image in every enabled zone, once per
storage type of the image (`Image.storage_types`).

Per region: one streamed multipart upload of the artefact to the region's bucket (a snapshot
import reads a bucket of its own region). Then, for every (zone, storage type) of that region
in parallel, from that one object:
- local storage (instance_local): import the object as an l_ssd Instance snapshot, wait until
  it is available, create an image from it;
- Block Storage (instance_sbs): import the object as a Block Storage snapshot (Block API
  import-from-object-storage), wait until it is available, create an Instance image whose
  root volume is that Block snapshot (servers made from it boot from a Block volume, which is
  all that PLAY2, PRO2, POP2 and COPARM1 types can do);
then wait until the image is available, and record a LocalImage of that storage type.

Idempotent and resumable: everything created carries the build's tags (cloud.tags), and
each step first looks for what an earlier run (or a create call whose answer was lost)
made, and reuses it (a build's two images in a zone are told apart by their root volume's
type: "sbs_snapshot" for Block Storage). A (zone, storage type) that fails is recorded with
the API's message and the others carry on; the stage then fails with "published N of M local
images; <zone> <storage>: <reason>", and `retry_zone` republishes one zone (or one storage type
of it) alone.

Threads: the zone workers only talk to the cloud. Every database write (LocalImage rows,
log lines, progress) happens on the calling thread, which also polls `cancelled()` and
tells the workers to stop through an Event.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import queue
import re
import threading
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, deletion, objectstorage, tags, waiters
from cloud.cancel import CancelCheck, Cancelled
from cloud.retries import CloudError, CloudTimeout, call

log = logging.getLogger(__name__)

Log = Callable[[str], None]
Progress = Callable[..., None]

SNAPSHOT_USABLE = ("available", "importing", "snapshotting")
IMAGE_USABLE = ("available", "creating")
# Instance states in which a delete is refused until the resource settles.
SNAPSHOT_TRANSIENT = ("importing", "snapshotting", "exporting")
# Block Storage snapshot statuses worth reusing (in_use: an image of the build holds it).
BLOCK_SNAPSHOT_USABLE = ("available", "creating", "in_use")
# The root volume type of an Instance image made from a Block Storage snapshot.
SBS_ROOT = "sbs_snapshot"


class PublishError(Exception):
    """Publishing failed in at least one zone; the message says where and why."""


@dataclass
class ZoneResult:
    """What a zone worker hands back to the calling thread."""

    zone: str
    storage_type: str = StorageType.LOCAL
    image_id: str = ""
    snapshot_id: str = ""
    error: str = ""
    reused: bool = False


@dataclass(frozen=True)
class _Target:
    """Everything a zone worker needs, with no database row in it (workers never query)."""

    build_id: int
    zone: str
    storage_type: str
    bucket: str
    key: str
    arch: str
    snapshot_name: str
    image_name: str
    known_image_id: str

    @property
    def where(self) -> str:
        return where(self.zone, self.storage_type)

    @property
    def is_block(self) -> bool:
        return self.storage_type == StorageType.SBS


Key = tuple[str, str]  # (zone code, storage type)


def where(zone: str, storage_type: str) -> str:
    """How logs and errors name a (zone, storage type): "fr-par-1 local", "fr-par-1 block"."""
    return f"{zone} {'block' if storage_type == StorageType.SBS else 'local'}"


def storage_types_of(version: ImageVersion) -> list[str]:
    """The storage types `version` is published with, in a stable order (local first)."""
    chosen = set(version.image.storage_types or StorageType.values)
    return [kind for kind in StorageType.values if kind in chosen]


# --- names and keys ---------------------------------------------------------------------------


def image_name(version: ImageVersion) -> str:
    """A name Scaleway accepts for an image: letters, digits and dashes only."""
    raw = f"{version.image.label}-{version.name}-{version.arch}"
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9-]+", "-", raw)).strip("-")[:100]


def snapshot_name(version: ImageVersion) -> str:
    return f"{version.name}-{version.arch}"


def object_key(build_id: int, version: ImageVersion, region: str) -> str:
    """The artefact's key in a region's bucket. The region is part of the key so that one
    bucket name shared by several regions (an emulator, a multi-region bucket) still holds
    one object per region."""
    return f"{tags.object_prefix(build_id)}{region}/{version.name}-{version.arch}.qcow2"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the calling thread -----------------------------------------------------------------------


class _Coordinator:
    """Relays workers' log lines to `log` on the calling thread, and cancel to the workers."""

    def __init__(self, log_fn: Log, cancelled: CancelCheck) -> None:
        self.log_fn = log_fn
        self.cancelled_fn = cancelled
        self.stop = threading.Event()
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()

    def say(self, line: str) -> None:
        """Called from workers: queue a log line."""
        self.lines.put(line)

    def drain(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.log_fn(line)

    def check_cancel(self) -> bool:
        if not self.stop.is_set() and self.cancelled_fn():
            self.stop.set()
        return self.stop.is_set()


def _upload_region(
    s3: Any,
    region: str,
    bucket: str,
    key: str,
    artefact: Path,
    sha256: str,
    *,
    coordinator: _Coordinator,
    report: Callable[[int], None],
) -> None:
    """Make sure the region's bucket holds the artefact: upload it unless the same bytes
    (by size and recorded sha256) are there already."""
    objectstorage.ensure_bucket(s3, bucket, region)
    size = artefact.stat().st_size
    existing = objectstorage.head(s3, bucket, key)
    if (
        existing
        and int(existing.get("ContentLength", -1)) == size
        and (existing.get("Metadata") or {}).get("sha256") == sha256
    ):
        coordinator.log_fn(f"{region}: {bucket}/{key} already holds this artefact; not uploading")
        report(size)
        return
    coordinator.log_fn(f"{region}: uploading {size} bytes to {bucket}/{key}")

    def on_progress(done: int) -> None:
        coordinator.drain()
        report(done)

    objectstorage.upload(
        s3,
        bucket,
        key,
        artefact,
        metadata={"sha256": sha256},
        on_progress=on_progress,
        cancelled=coordinator.check_cancel,
    )
    coordinator.log_fn(f"{region}: upload done")


def _record_start(version: ImageVersion, zone: Zone, storage_type: str) -> LocalImage:
    row, _ = LocalImage.objects.get_or_create(version=version, zone=zone, storage_type=storage_type)
    if row.state != LocalImageState.AVAILABLE:
        row.state, row.error = LocalImageState.CREATING, ""
        row.save(update_fields=["state", "error", "updated_at"])
    return row


def _record_result(row: LocalImage, result: ZoneResult) -> None:
    if result.error:
        row.state, row.error = LocalImageState.ERROR, result.error[:2000]
    else:
        row.state, row.error = LocalImageState.AVAILABLE, ""
        row.provider_image_id, row.snapshot_id = result.image_id, result.snapshot_id
    row.save(update_fields=["state", "error", "provider_image_id", "snapshot_id", "updated_at"])


def _publish_zones(
    *,
    build_id: int,
    version: ImageVersion,
    artefact: Path,
    zones: list[Zone],
    storage_types: list[str],
    log: Log,
    progress: Progress,
    cancelled: CancelCheck,
) -> tuple[list[LocalImage], list[tuple[str, str]]]:
    """Publish in `zones` with `storage_types`; return the available LocalImages and the
    (where, error) failures ("fr-par-1 block", "...")."""
    if not artefact.is_file():
        raise PublishError(f"The artefact {artefact} is missing; build the version again.")
    try:
        api = clients.instance_api()
    except CloudError as exc:
        raise PublishError(str(exc)) from exc
    try:
        block_api = clients.block_api() if StorageType.SBS in storage_types else None
    except CloudError as exc:
        raise PublishError(str(exc)) from exc
    coordinator = _Coordinator(log, cancelled)
    keys: list[Key] = [(zone.code, kind) for zone in zones for kind in storage_types]
    by_code = {zone.code: zone for zone in zones}
    rows = {key: _record_start(version, by_code[key[0]], key[1]) for key in keys}
    regions: dict[str, list[Zone]] = {}
    for zone in zones:
        regions.setdefault(zone.region, []).append(zone)
    size = artefact.stat().st_size
    total = size * len(regions)
    uploaded: dict[str, int] = {}

    def report(region: str, done: int) -> None:
        uploaded[region] = done
        progress(sum(uploaded.values()), total, "bytes")

    sha256 = version.artefact_sha256 or _sha256(artefact)
    failures: list[tuple[str, str]] = []
    futures: dict[Future[ZoneResult], Key] = {}
    workers = max(1, min(len(keys), settings.PUBLISH_ZONE_CONCURRENCY))
    kinds = " and ".join(StorageType(kind).label for kind in storage_types)
    log(f"Publishing {version} to {len(zones)} zone(s) in {len(regions)} region(s), on {kinds}")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="publish") as pool:
        try:
            # Uploads run here, one region after the other, while the zones of the regions
            # already uploaded import in the background.
            for region, region_zones in sorted(regions.items()):
                bucket = objectstorage.bucket_name(region)
                key = object_key(build_id, version, region)
                try:
                    s3 = clients.s3_client(region)
                    _upload_region(
                        s3,
                        region,
                        bucket,
                        key,
                        artefact,
                        sha256,
                        coordinator=coordinator,
                        report=functools.partial(report, region),
                    )
                except CloudError as exc:
                    for zone in region_zones:
                        for kind in storage_types:
                            failures.append(
                                (where(zone.code, kind), f"upload to {region} failed: {exc}")
                            )
                            _record_result(
                                rows[(zone.code, kind)], ZoneResult(zone.code, kind, error=str(exc))
                            )
                    log(f"{region}: upload failed: {exc}")
                    continue
                for zone in region_zones:
                    for kind in storage_types:
                        target = _Target(
                            build_id=build_id,
                            zone=zone.code,
                            storage_type=kind,
                            bucket=bucket,
                            key=key,
                            arch=version.arch,
                            snapshot_name=snapshot_name(version),
                            image_name=image_name(version),
                            known_image_id=rows[(zone.code, kind)].provider_image_id,
                        )
                        future = pool.submit(_zone_worker, api, block_api, target, coordinator)
                        futures[future] = (zone.code, kind)
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                coordinator.drain()
                coordinator.check_cancel()
                for future in done:
                    result = future.result()
                    label = where(result.zone, result.storage_type)
                    _record_result(rows[(result.zone, result.storage_type)], result)
                    if result.error:
                        failures.append((label, result.error))
                        log(f"{label}: FAILED: {result.error}")
                    else:
                        noun = (
                            "block snapshot"
                            if result.storage_type == StorageType.SBS
                            else "snapshot"
                        )
                        log(
                            f"{label}: image {result.image_id} available "
                            f"({noun} {result.snapshot_id}"
                            f"{', reused' if result.reused else ''})"
                        )
        except Cancelled:
            coordinator.stop.set()
        finally:
            if coordinator.stop.is_set():
                pool.shutdown(wait=True, cancel_futures=True)
            coordinator.drain()
    if coordinator.stop.is_set():
        for row in rows.values():
            row.refresh_from_db()
            if row.state == LocalImageState.CREATING:
                _record_result(
                    row,
                    ZoneResult(row.zone.code, row.storage_type, error="Publishing was cancelled."),
                )
        raise Cancelled("Publishing was cancelled.")
    available = [rows[key] for key in keys if rows[key].state == LocalImageState.AVAILABLE]
    return available, sorted(failures)


def publish(
    *,
    build_id: int,
    version: ImageVersion,
    artefact: Path,
    zones: Iterable[Zone],
    log: Log,
    progress: Progress,
    cancelled: CancelCheck,
) -> list[LocalImage]:
    """Publish `version` (its QCOW2 at `artefact`) in every enabled zone of `zones`, with
    every storage type of its image.

    Returns the LocalImages (all available). Raises PublishError when any (zone, storage
    type) failed (the others are recorded as published), cloud.cancel.Cancelled on cancel.
    """
    targets = sorted((z for z in zones if z.enabled), key=lambda z: z.code)
    if not targets:
        raise PublishError("No zone is enabled: enable at least one zone to publish to.")
    kinds = storage_types_of(version)
    available, failures = _publish_zones(
        build_id=build_id,
        version=version,
        artefact=Path(artefact),
        zones=targets,
        storage_types=kinds,
        log=log,
        progress=progress,
        cancelled=cancelled,
    )
    wanted = len(targets) * len(kinds)
    if failures:
        reasons = "; ".join(f"{label}: {message}" for label, message in failures)
        raise PublishError(
            f"published {len(available)} of {wanted} local images "
            f"({len(targets)} zone(s) x {len(kinds)} storage type(s)); {reasons}"
        )
    log(f"Published {len(available)} local image(s) in {len(targets)} zone(s)")
    return available


def retry_zone(
    build_id: int,
    version: ImageVersion,
    zone: Zone,
    *,
    storage_types: Collection[str] | None = None,
    artefact: Path | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
) -> list[LocalImage]:
    """Publish `version` in one zone again, with `storage_types` (default: every storage type
    of its image), uploading the artefact again if its object is gone; reuses whatever of that
    zone already exists. Returns the LocalImages; raises PublishError on failure."""
    kinds = storage_types_of(version)
    if storage_types is not None:
        unknown = sorted(set(storage_types) - set(StorageType.values))
        if unknown:
            raise PublishError(f"Unknown storage type(s): {', '.join(unknown)}.")
        kinds = [kind for kind in StorageType.values if kind in set(storage_types)]
    available, failures = _publish_zones(
        build_id=build_id,
        version=version,
        artefact=Path(artefact or version.artefact_path),
        zones=[zone],
        storage_types=kinds,
        log=log or (lambda line: _log_line(build_id, line)),
        progress=progress or (lambda *args: None),
        cancelled=cancelled or (lambda: False),
    )
    if failures:
        raise PublishError("; ".join(f"{label}: {message}" for label, message in failures))
    return available


def _log_line(build_id: int, line: str) -> None:
    """Where retry_zone logs when the caller gives no log (a view, a task)."""
    log.info("build %s publish: %s", build_id, line)


# --- the zone workers -------------------------------------------------------------------------


def _zone_worker(
    api: Any, block_api: Any, target: _Target, coordinator: _Coordinator
) -> ZoneResult:
    """Publish in one (zone, storage type); never raises (the result carries the error)."""
    kind = target.storage_type
    try:
        return _publish_zone(api, block_api, target, coordinator.say, coordinator.stop.is_set)
    except Cancelled:
        return ZoneResult(target.zone, kind, error="Publishing was cancelled.")
    except CloudError as exc:
        return ZoneResult(target.zone, kind, error=str(exc))
    except Exception as exc:  # a bug must fail this zone, not hang the stage
        log.exception("publishing in %s failed", target.where)
        return ZoneResult(target.zone, kind, error=f"unexpected error: {type(exc).__name__}: {exc}")
    finally:
        connection.close()  # workers do not query, but never leak a connection if one did


def _publish_zone(
    api: Any, block_api: Any, target: _Target, say: Log, stop: CancelCheck
) -> ZoneResult:
    zone, kind = target.zone, target.storage_type
    image_timeout = float(settings.PUBLISH_IMAGE_TIMEOUT_SECONDS)

    # 1. An image of this build and storage type already in the zone (an earlier run).
    image = _existing_image(api, target, say, stop)
    if image is not None:
        image = waiters.wait_for_image(api, zone, image.id, timeout=image_timeout, cancelled=stop)
        return ZoneResult(zone, kind, image.id, _root_id(image), reused=True)

    # 2. The snapshot, of the storage type's own API.
    if target.is_block:
        snapshot_id = _block_snapshot(block_api, target, say, stop)
    else:
        snapshot_id = _local_snapshot(api, target, say, stop)

    # 3. The image.
    created = call(
        _create_image,
        api,
        target,
        snapshot_id,
        what=f"create image in {target.where}",
        cancelled=stop,
        recover=lambda: _found_image(api, target, stop),
    )
    try:
        image = waiters.wait_for_image(api, zone, created.id, timeout=image_timeout, cancelled=stop)
    except CloudTimeout:
        raise  # left in place: a later run finds it by tag and waits again
    except CloudError:
        call(api.delete_image, image_id=created.id, zone=zone, what=f"delete image in {zone}")
        raise
    return ZoneResult(zone, kind, image.id, snapshot_id)


def _local_snapshot(api: Any, target: _Target, say: Log, stop: CancelCheck) -> str:
    """An available l_ssd Instance snapshot of the build in the zone: reused, or imported."""
    zone = target.zone
    import_timeout = float(settings.PUBLISH_IMPORT_TIMEOUT_SECONDS)
    snapshot = _existing_snapshot(api, target, say, stop)
    if snapshot is None:
        say(f"{target.where}: importing {target.bucket}/{target.key} as a snapshot")
        snapshot = call(
            _create_snapshot,
            api,
            target,
            what=f"import snapshot in {zone}",
            cancelled=stop,
            recover=lambda: _found_by_tags(
                api.list_snapshots_all, "snapshots", SNAPSHOT_USABLE, target, stop
            ),
        )
    try:
        snapshot = waiters.wait_for_snapshot(
            api, zone, snapshot.id, timeout=import_timeout, cancelled=stop
        )
    except CloudTimeout:
        raise  # left in place: a later run finds it by tag and waits again
    except CloudError as exc:
        # A refused import is of no use to anyone: delete it now, nothing is left behind.
        _delete_snapshot(api, zone, snapshot.id, stop)
        raise CloudError(f"import refused: {exc}") from exc
    say(f"{target.where}: snapshot {snapshot.id} available")
    return str(snapshot.id)


def _block_snapshot(block_api: Any, target: _Target, say: Log, stop: CancelCheck) -> str:
    """An available Block Storage snapshot of the build in the zone: reused, or imported
    from the region's object."""
    zone = target.zone
    import_timeout = float(settings.PUBLISH_IMPORT_TIMEOUT_SECONDS)
    snapshot = _existing_block_snapshot(block_api, target, say, stop)
    if snapshot is None:
        say(f"{target.where}: importing {target.bucket}/{target.key} as a Block Storage snapshot")
        snapshot = call(
            block_api.import_snapshot_from_object_storage,
            zone=zone,
            bucket=target.bucket,
            key=target.key,
            name=target.snapshot_name,
            tags=tags.tags_for(target.build_id),
            what=f"import block snapshot in {zone}",
            cancelled=stop,
            recover=lambda: _found_block_snapshot(block_api, target, stop),
        )
    try:
        snapshot = waiters.wait_for_block_snapshot(
            block_api,
            zone,
            snapshot.id,
            until=("available", "in_use"),
            timeout=import_timeout,
            cancelled=stop,
        )
    except CloudTimeout:
        raise  # left in place: a later run finds it by tag and waits again
    except CloudError as exc:
        _delete_block_snapshot(zone, snapshot.id)
        raise CloudError(f"import refused: {exc}") from exc
    say(f"{target.where}: block snapshot {snapshot.id} available")
    return str(snapshot.id)


def _found_by_tags(
    list_all: Callable[..., Any],
    noun: str,
    states: Collection[str],
    target: _Target,
    stop: CancelCheck,
) -> Any:
    """A usable resource of the build in the zone, found by its tags: what a create whose
    answer was lost made after all."""
    return tags.find_one(
        list_all,
        what=f"list {noun} in {target.zone}",
        carrying=tags.tags_for(target.build_id),
        states=states,
        cancelled=stop,
        zone=target.zone,
        tags=tags.build_tag(target.build_id),
    )


def _found_image(api: Any, target: _Target, stop: CancelCheck) -> Any:
    """The build's usable image of the target's storage type: what a create_image whose
    answer was lost made after all."""
    images = tags.find_images(api, target.zone, target.build_id, cancelled=stop)
    for image in images:
        if image.state in IMAGE_USABLE and _is_of_storage(image, target.storage_type):
            return image
    return None


def _found_block_snapshot(block_api: Any, target: _Target, stop: CancelCheck) -> Any:
    """The build's usable Block snapshot in the zone (after a lost import answer)."""
    for snapshot in tags.find_block_snapshots(
        block_api, target.zone, target.build_id, cancelled=stop
    ):
        if snapshot.status in BLOCK_SNAPSHOT_USABLE:
            return snapshot
    return None


def _is_of_storage(image: Any, storage_type: str) -> bool:
    """True when an Instance image boots from `storage_type`: an image made from a Block
    snapshot has a root volume of type sbs_snapshot."""
    root_type = str(getattr(getattr(image, "root_volume", None), "volume_type", "") or "")
    return (root_type == SBS_ROOT) == (storage_type == StorageType.SBS)


def _root_id(image: Any) -> str:
    root = getattr(image, "root_volume", None)
    return getattr(root, "id", "") or ""


def _create_snapshot(api: Any, target: _Target) -> Any:
    return api.create_snapshot(
        zone=target.zone,
        name=target.snapshot_name,
        volume_type="l_ssd",
        bucket=target.bucket,
        key=target.key,
        tags=tags.tags_for(target.build_id),
    ).snapshot


def _create_image(api: Any, target: _Target, snapshot_id: str) -> Any:
    return api.create_image(
        zone=target.zone,
        root_volume=snapshot_id,
        arch=target.arch,
        name=target.image_name,
        tags=tags.tags_for(target.build_id),
    ).image


def _existing_image(api: Any, target: _Target, say: Log, stop: CancelCheck) -> Any:
    """The build's usable image of the target's storage type in the zone, after deleting
    broken ones and duplicates (of that storage type: the other type's image is not ours)."""
    images = [
        i
        for i in tags.find_images(api, target.zone, target.build_id, cancelled=stop)
        if _is_of_storage(i, target.storage_type)
    ]
    usable = [i for i in images if i.state in IMAGE_USABLE]
    # Prefer the one already recorded, then an available one.
    usable.sort(key=lambda i: (i.id != target.known_image_id, i.state != "available"))
    keep = usable[0] if usable else None
    for image in images:
        if image is not keep:
            say(f"{target.where}: deleting {image.state} duplicate image {image.id}")
            deletion.delete_image(api, target.zone, image.id, cancelled=stop)
    if keep is not None:
        say(f"{target.where}: reusing image {keep.id} ({keep.state})")
    return keep


def _existing_snapshot(api: Any, target: _Target, say: Log, stop: CancelCheck) -> Any:
    """The build's usable snapshot in the zone, after deleting failed ones and duplicates."""
    return _keep_one_snapshot(
        tags.find_snapshots(api, target.zone, target.build_id, cancelled=stop),
        kind="snapshot",
        state_of=lambda s: s.state,
        usable=SNAPSHOT_USABLE,
        prefer=("available",),
        delete=lambda snapshot_id: _delete_snapshot(api, target.zone, snapshot_id, stop),
        target=target,
        say=say,
    )


def _existing_block_snapshot(block_api: Any, target: _Target, say: Log, stop: CancelCheck) -> Any:
    """The build's usable Block snapshot in the zone, after deleting failed ones and
    duplicates (a duplicate still held by an image is left to the janitor)."""
    return _keep_one_snapshot(
        tags.find_block_snapshots(block_api, target.zone, target.build_id, cancelled=stop),
        kind="block snapshot",
        state_of=lambda s: s.status,
        usable=BLOCK_SNAPSHOT_USABLE,
        prefer=("available", "in_use"),
        leave=("in_use", "deleting", "deleted"),
        delete=lambda snapshot_id: _delete_block_snapshot(target.zone, snapshot_id),
        target=target,
        say=say,
    )


def _keep_one_snapshot(
    snapshots: list[Any],
    *,
    kind: str,
    state_of: Callable[[Any], Any],
    usable: tuple[str, ...],
    prefer: tuple[str, ...],
    delete: Callable[[str], object],
    target: _Target,
    say: Log,
    leave: tuple[str, ...] = (),
) -> Any:
    """Of a build's snapshots of one kind in a zone, the one to reuse: the first in the
    earliest state of `prefer`, else the first `usable` one; None when none is usable. Every
    other one is deleted, except those in a state of `leave`."""

    def rank(snapshot: Any) -> int:
        state = state_of(snapshot)
        return prefer.index(state) if state in prefer else len(prefer)

    keep = min((s for s in snapshots if state_of(s) in usable), key=rank, default=None)
    for snapshot in snapshots:
        if snapshot is keep or state_of(snapshot) in leave:
            continue
        say(f"{target.where}: deleting {state_of(snapshot)} {kind} {snapshot.id}")
        delete(snapshot.id)
    if keep is not None:
        say(f"{target.where}: reusing {kind} {keep.id} ({state_of(keep)})")
    return keep


# --- deleting ---------------------------------------------------------------------------------


def _delete_snapshot(
    api: Any, zone: str, snapshot_id: str, stop: CancelCheck | None = None
) -> bool:
    """Delete a snapshot, waiting first (up to the import timeout) for an import in progress
    to end (a transient snapshot cannot be deleted); False when it was already gone."""
    timeout = float(settings.PUBLISH_IMPORT_TIMEOUT_SECONDS)
    return deletion.delete_snapshot(api, zone, snapshot_id, timeout=timeout, cancelled=stop)


def _delete_block_snapshot(zone: str, snapshot_id: str) -> bool:
    """Delete a Block snapshot; a refusal (still in use or in transition) is logged and left
    for the janitor, which finds it by its build's tags."""
    try:
        return deletion.delete_block_snapshot(zone, snapshot_id)
    except CloudError as exc:
        log.warning("block snapshot %s in %s left for the janitor: %s", snapshot_id, zone, exc)
        return False


def discard(build_id: int, *, log: Log | None = None) -> dict[str, list[str]]:
    """Delete everything a build put in the cloud: images of both storage types, then
    Instance and Block snapshots (an image holds its snapshot), in every known zone, then its
    objects in every region's bucket. Marks the build's LocalImages deleted. Raises
    CloudError listing what could not be deleted (after trying everything else)."""
    say = log or (lambda line: _log_line(build_id, line))
    api = clients.instance_api()
    block_api = clients.block_api()
    zone_codes = sorted(
        set(Zone.objects.values_list("code", flat=True))
        | set(
            LocalImage.objects.filter(version__build__pk=build_id).values_list(
                "zone__code", flat=True
            )
        )
    )
    removed: dict[str, list[str]] = {"images": [], "snapshots": [], "objects": []}
    errors: list[str] = []
    for zone in zone_codes:
        try:
            for image in tags.find_images(api, zone, build_id):
                if deletion.delete_image(api, zone, image.id):
                    removed["images"].append(f"{zone}/{image.id}")
            for snapshot in tags.find_snapshots(api, zone, build_id):
                if _delete_snapshot(api, zone, snapshot.id):
                    removed["snapshots"].append(f"{zone}/{snapshot.id}")
        except CloudError as exc:
            errors.append(f"{zone}: {exc}")
        try:
            # Block snapshots after the images: an SBS image holds its Block snapshot.
            for snapshot in tags.find_block_snapshots(block_api, zone, build_id):
                if deletion.delete_block_snapshot(zone, snapshot.id):
                    removed["snapshots"].append(f"{zone}/{snapshot.id} (block)")
        except CloudError as exc:
            errors.append(f"{zone} block: {exc}")
    for region in sorted({code.rsplit("-", 1)[0] for code in zone_codes}):
        try:
            s3 = clients.s3_client(region)
            bucket = objectstorage.bucket_name(region)
            keys = objectstorage.delete_prefix(s3, region, bucket, tags.object_prefix(build_id))
            removed["objects"].extend(f"{region}/{bucket}/{key}" for key in keys)
        except CloudError as exc:
            errors.append(f"{region}: {exc}")
    LocalImage.objects.filter(version__build__pk=build_id).exclude(
        state=LocalImageState.DELETED
    ).update(state=LocalImageState.DELETED)
    say(
        f"Discarded build {build_id}'s cloud resources: {len(removed['images'])} image(s), "
        f"{len(removed['snapshots'])} snapshot(s), {len(removed['objects'])} object(s)"
    )
    if errors:
        raise CloudError("Could not discard everything: " + "; ".join(errors))
    return removed
