"""Deleting what the factory made in the cloud, for the janitor and for retirement.

Every delete goes through `cloud.retries.call` and is idempotent: a resource that is already
gone (404) counts as deleted, and the functions return False for it (True when this call
deleted it). Any other failure is a `CloudError` in words, after `call`'s retries.

An instance image does not take its snapshots with it (neither on Scaleway nor on
localcloud), and a snapshot an image still uses cannot be deleted: `ImageRemoval` deletes an
image and then the snapshots behind it, in that order.

An image's volumes are Instance snapshots (`l_ssd`, local storage) or Block Storage snapshots
(`sbs_snapshot`): each kind is deleted through its own API, as the Instance API does not know
Block snapshots (404). A Block snapshot stays `in_use` until the deletion of the image that
holds it has been applied, so its deletion waits for that (and for `creating` or `exporting`
to end) up to a timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from cloud import clients, waiters
from cloud.cancel import CancelCheck
from cloud.retries import CloudError, CloudTimeout, call

# States of an instance snapshot that refuse deletion (409 transient_state) but end by
# themselves; a delete waits for one of SNAPSHOT_SETTLED, then tries again.
SNAPSHOT_SETTLED = ("available", "error", "invalid_data")
# A Block Storage snapshot refuses deletion while an image holds it (412 precondition failed,
# status in_use) and in a transient status (409: creating, exporting); both end by themselves.
BLOCK_SNAPSHOT_REFUSALS = (409, 412)
BLOCK_SNAPSHOT_GONE = ("deleting", "deleted")
# The volume type of an image's volume that is a Block Storage snapshot.
SBS_SNAPSHOT = "sbs_snapshot"

# Deletion order of what the factory made: what holds something goes before what it holds (a
# server before its image, an image before the snapshots behind it), and an uploaded object
# last, after the snapshots: an import still in progress reads it.
KIND_ORDER = (
    "server",
    "image",
    "snapshot",
    "volume",
    "block_volume",
    "block_snapshot",
    "security_group",
    "private_network",
    "ip",
    "object",
)


def _wait_seconds(timeout: float | None) -> float:
    return float(timeout if timeout is not None else settings.CLOUD_DELETE_WAIT_SECONDS)


def _gone_ok(
    fn: Callable[..., Any], *, what: str, cancelled: CancelCheck | None = None, **kwargs: Any
) -> bool:
    """Call an SDK delete; False when the resource was already gone."""
    try:
        call(fn, what=what, cancelled=cancelled, **kwargs)
    except CloudError as exc:
        if exc.not_found:
            return False
        raise
    return True


def delete_image(
    api: Any, zone: str, image_id: str, *, cancelled: CancelCheck | None = None
) -> bool:
    """Delete an instance image (its snapshots stay)."""
    return _gone_ok(
        api.delete_image,
        image_id=image_id,
        zone=zone,
        what=f"delete image {image_id} in {zone}",
        cancelled=cancelled,
    )


def delete_snapshot(
    api: Any,
    zone: str,
    snapshot_id: str,
    *,
    timeout: float | None = None,
    cancelled: CancelCheck | None = None,
) -> bool:
    """Delete an instance snapshot, first waiting (up to `timeout` seconds) for an import or
    export in progress to end: a snapshot in a transient state cannot be deleted."""
    what = f"delete snapshot {snapshot_id} in {zone}"
    for _attempt in range(2):
        try:
            call(
                api.delete_snapshot,
                snapshot_id=snapshot_id,
                zone=zone,
                what=what,
                cancelled=cancelled,
            )
            return True
        except CloudError as exc:
            if exc.not_found:
                return False
            if exc.status != 409:
                raise
        try:
            waiters.wait_for_snapshot(
                api,
                zone,
                snapshot_id,
                until=SNAPSHOT_SETTLED,
                timeout=_wait_seconds(timeout),
                cancelled=cancelled,
            )
        except CloudError as exc:
            if exc.not_found:
                return False
            raise
    raise CloudError(f"{what}: still in a transient state")


def delete_volume(api: Any, zone: str, volume_id: str) -> bool:
    """Delete an instance volume (a detached one)."""
    return _gone_ok(
        api.delete_volume, volume_id=volume_id, zone=zone, what=f"delete volume in {zone}"
    )


def delete_block_volume(zone: str, volume_id: str) -> bool:
    """Delete a Block Storage (SBS) volume."""
    return _gone_ok(
        clients.block_api().delete_volume,
        volume_id=volume_id,
        zone=zone,
        what=f"delete block volume in {zone}",
    )


def _holders(snapshot: Any) -> str:
    """What holds a Block snapshot, from its references: " (used by instance_image <id>)"."""
    held = [
        f"{getattr(r, 'product_resource_type', '') or 'resource'} "
        f"{getattr(r, 'product_resource_id', '')}".strip()
        for r in getattr(snapshot, "references", None) or []
    ]
    return f" (used by {', '.join(held)})" if held else ""


@dataclass(frozen=True)
class _BlockDeletion:
    """One try at deleting a Block snapshot: "deleted", "gone" (already, or by another
    deletion), or the status of the snapshot that refused it, with the refusal."""

    state: str
    snapshot: Any = None
    refused: CloudError | None = None


def delete_block_snapshot(
    zone: str,
    snapshot_id: str,
    *,
    api: Any = None,
    timeout: float | None = None,
    cancelled: CancelCheck | None = None,
) -> bool:
    """Delete a Block Storage (SBS) snapshot through the Block API (`api`, a BlockV1API).

    A snapshot still held by an image (in_use: the image's deletion is not applied yet) or in
    a transient status (creating, exporting) refuses deletion: it is polled until it can go,
    for up to `timeout` seconds, then a CloudTimeout says in which status and held by what
    (with the status of the refusal, 409 or 412: that one snapshot is stuck, not its zone)."""
    api = api if api is not None else clients.block_api()
    what = f"delete block snapshot {snapshot_id} in {zone}"
    wait = _wait_seconds(timeout)

    def attempt() -> _BlockDeletion:
        try:
            call(
                api.delete_snapshot,
                snapshot_id=snapshot_id,
                zone=zone,
                what=what,
                cancelled=cancelled,
            )
            return _BlockDeletion("deleted")
        except CloudError as exc:
            if exc.not_found:
                return _BlockDeletion("gone")
            if exc.status not in BLOCK_SNAPSHOT_REFUSALS:
                raise
            refused = exc
        try:
            snapshot = call(
                api.get_snapshot,
                snapshot_id=snapshot_id,
                zone=zone,
                what=f"get block snapshot {snapshot_id} in {zone}",
                cancelled=cancelled,
            )
        except CloudError as exc:
            if exc.not_found:
                return _BlockDeletion("gone")
            raise
        status = str(snapshot.status)
        if status in BLOCK_SNAPSHOT_GONE:
            return _BlockDeletion("gone")  # another deletion got there first
        return _BlockDeletion(status, snapshot, refused)

    def stuck(last: _BlockDeletion) -> CloudTimeout:
        assert last.refused is not None
        answer = last.refused.message.removeprefix(f"{what}: ")
        return CloudTimeout(
            f"{what}: still {last.state}{_holders(last.snapshot)} after {wait:g} s "
            f"(the API: {answer})",
            status=last.refused.status,
            type_=last.refused.type,
        )

    outcome = waiters.wait_for(
        attempt,
        state_of=lambda a: a.state,
        until=("deleted", "gone"),
        what=what,
        timeout=wait,
        cancelled=cancelled,
        timeout_error=stuck,
    )
    return bool(outcome.state == "deleted")


def delete_server(api: Any, zone: str, server_id: str, *, timeout: float | None = None) -> bool:
    """Delete a server and its local volumes. A stopped server is deleted, then its local
    volumes; a running one is terminated (which deletes its local volumes); one in
    transition is waited for first."""
    try:
        server = call(
            api.get_server, server_id=server_id, zone=zone, what=f"get server in {zone}"
        ).server
    except CloudError as exc:
        if exc.not_found:
            return False
        raise
    wait = _wait_seconds(timeout)
    if server.state in ("starting", "stopping"):
        server = waiters.wait_for_server(
            api, zone, server_id, until=("running", "stopped", "stopped in place"), timeout=wait
        )
    if server.state == "stopped":
        local = [
            v.id
            for v in (server.volumes or {}).values()
            if getattr(v, "volume_type", "") in ("l_ssd", "scratch")
        ]
        deleted = _gone_ok(
            api.delete_server, server_id=server_id, zone=zone, what=f"delete server in {zone}"
        )
        for volume_id in local:
            delete_volume(api, zone, volume_id)
        return deleted
    if not _gone_ok(
        api.server_action,
        server_id=server_id,
        zone=zone,
        action="terminate",
        what=f"terminate server in {zone}",
    ):
        return False
    waiters.wait_until_gone(
        lambda: call(api.get_server, server_id=server_id, zone=zone, what="get server"),
        what=f"server {server_id} in {zone}",
        timeout=wait,
    )
    return True


def _volumes_of(image: Any) -> list[tuple[str, bool]]:
    """(id, is a Block snapshot) of each volume of an instance image: root, then extras."""
    volumes = [getattr(image, "root_volume", None)]
    volumes += list((getattr(image, "extra_volumes", None) or {}).values())
    found: list[tuple[str, bool]] = []
    for volume in volumes:
        volume_id = getattr(volume, "id", "") or ""
        if volume_id and volume_id not in [v for v, _block in found]:
            found.append((volume_id, str(getattr(volume, "volume_type", "")) == SBS_SNAPSHOT))
    return found


def snapshots_of(image: Any) -> list[str]:
    """The ids of the snapshots an instance image is made of (Instance or Block snapshots):
    its root volume, then its extra volumes."""
    return [volume_id for volume_id, _block in _volumes_of(image)]


def block_snapshots_of(image: Any) -> list[str]:
    """The ids of the Block Storage snapshots among an instance image's volumes."""
    return [volume_id for volume_id, block in _volumes_of(image) if block]


@dataclass
class ImageRemoval:
    """Delete an instance image and the snapshots behind it in one zone.

    `snapshot_ids` are the ones the caller knows of (recorded when the image was made), of
    either kind; `block_snapshot_ids` those it knows to be Block Storage snapshots. The
    image's own volumes are added when the image is still there, each with its kind. A
    recorded id of unknown kind that the Instance API does not know is tried in the Block
    API before it counts as gone.

    `deleted` and `already_gone` fill in as the removal goes ("image <id>", "snapshot <id>",
    "block snapshot <id>"), so a removal that fails half-way still says what it did.
    """

    zone: str
    image_id: str
    snapshot_ids: list[str] = field(default_factory=list)
    block_snapshot_ids: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)

    def _note(self, kind: str, resource_id: str, deleted: bool) -> None:
        (self.deleted if deleted else self.already_gone).append(f"{kind} {resource_id}")

    def run(
        self,
        api: Any = None,
        *,
        block: Any = None,
        timeout: float | None = None,
        cancelled: CancelCheck | None = None,
    ) -> None:
        """Raises CloudError on the first failure (what is left is tried again next time).
        `api` is the Instance API, `block` the Block API (both from the environment when
        not given)."""
        api = api if api is not None else clients.instance_api()
        blocks = [s for s in self.block_snapshot_ids if s]
        instances: list[str] = []  # known to be Instance snapshots (from the image)
        unknown = [s for s in self.snapshot_ids if s and s not in blocks]
        if self.image_id:
            try:
                image = call(
                    api.get_image,
                    image_id=self.image_id,
                    zone=self.zone,
                    what=f"get image {self.image_id} in {self.zone}",
                    cancelled=cancelled,
                ).image
            except CloudError as exc:
                if not exc.not_found:
                    raise
                self._note("image", self.image_id, False)
            else:
                for volume_id, is_block in _volumes_of(image):
                    known = blocks if is_block else instances
                    if volume_id not in known:
                        known.append(volume_id)
                unknown = [s for s in unknown if s not in blocks and s not in instances]
                deleted = delete_image(api, self.zone, self.image_id, cancelled=cancelled)
                self._note("image", self.image_id, deleted)
        for snapshot_id in instances:
            deleted = delete_snapshot(
                api, self.zone, snapshot_id, timeout=timeout, cancelled=cancelled
            )
            self._note("snapshot", snapshot_id, deleted)
        if blocks or unknown:
            block = block if block is not None else clients.block_api()
        for snapshot_id in blocks:
            deleted = delete_block_snapshot(
                self.zone, snapshot_id, api=block, timeout=timeout, cancelled=cancelled
            )
            self._note("block snapshot", snapshot_id, deleted)
        for snapshot_id in unknown:
            if delete_snapshot(api, self.zone, snapshot_id, timeout=timeout, cancelled=cancelled):
                self._note("snapshot", snapshot_id, True)
                continue
            # Not an Instance snapshot (any more): it may be a Block snapshot.
            deleted = delete_block_snapshot(
                self.zone, snapshot_id, api=block, timeout=timeout, cancelled=cancelled
            )
            self._note("block snapshot" if deleted else "snapshot", snapshot_id, deleted)
