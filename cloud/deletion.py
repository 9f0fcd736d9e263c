"""Deleting what the factory made in the cloud, for the janitor and for retirement.

Every delete goes through `cloud.retries.call` and is idempotent: a resource that is already
gone (404) counts as deleted, and the functions return False for it (True when this call
deleted it). Any other failure is a `CloudError` in words, after `call`'s retries.

An instance image does not take its snapshots with it (neither on Scaleway nor on
localcloud), and a snapshot an image still uses cannot be deleted: `ImageRemoval` deletes an
image and then the snapshots behind it, in that order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from cloud import clients, waiters
from cloud.cancel import CancelCheck
from cloud.retries import CloudError, call

# States of an instance snapshot that refuse deletion (409 transient_state) but end by
# themselves; a delete waits for one of SNAPSHOT_SETTLED, then tries again.
SNAPSHOT_SETTLED = ("available", "error", "invalid_data")

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


def _delete_block(kind: str, zone: str, resource_id: str) -> bool:
    """Delete a Block Storage (SBS) `kind`: "volume" or "snapshot"."""
    ids: dict[str, Any] = {f"{kind}_id": resource_id}
    return _gone_ok(
        getattr(clients.block_api(), f"delete_{kind}"),
        zone=zone,
        what=f"delete block {kind} in {zone}",
        **ids,
    )


def delete_block_volume(zone: str, volume_id: str) -> bool:
    """Delete a Block Storage (SBS) volume."""
    return _delete_block("volume", zone, volume_id)


def delete_block_snapshot(zone: str, snapshot_id: str) -> bool:
    """Delete a Block Storage (SBS) snapshot."""
    return _delete_block("snapshot", zone, snapshot_id)


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


def snapshots_of(image: Any) -> list[str]:
    """The ids of the snapshots an instance image is made of: its root volume, then its extra
    volumes."""
    ids = []
    root_id = getattr(getattr(image, "root_volume", None), "id", "")
    if root_id:
        ids.append(root_id)
    for volume in (getattr(image, "extra_volumes", None) or {}).values():
        if getattr(volume, "id", "") and volume.id not in ids:
            ids.append(volume.id)
    return ids


@dataclass
class ImageRemoval:
    """Delete an instance image and the snapshots behind it in one zone.

    `snapshot_ids` are the ones the caller knows of (recorded when the image was made); the
    image's own volumes are added when the image is still there. `deleted` and
    `already_gone` fill in as the removal goes ("image <id>", "snapshot <id>"), so a removal
    that fails half-way still says what it did.
    """

    zone: str
    image_id: str
    snapshot_ids: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)

    def _note(self, kind: str, resource_id: str, deleted: bool) -> None:
        (self.deleted if deleted else self.already_gone).append(f"{kind} {resource_id}")

    def run(self, api: Any = None, *, timeout: float | None = None) -> None:
        """Raises CloudError on the first failure (what is left is tried again next time)."""
        api = api if api is not None else clients.instance_api()
        snapshots = [s for s in self.snapshot_ids if s]
        if self.image_id:
            try:
                image = call(
                    api.get_image,
                    image_id=self.image_id,
                    zone=self.zone,
                    what=f"get image {self.image_id} in {self.zone}",
                ).image
            except CloudError as exc:
                if not exc.not_found:
                    raise
                self._note("image", self.image_id, False)
            else:
                snapshots += [s for s in snapshots_of(image) if s not in snapshots]
                self._note("image", self.image_id, delete_image(api, self.zone, self.image_id))
        for snapshot_id in snapshots:
            self._note(
                "snapshot",
                snapshot_id,
                delete_snapshot(api, self.zone, snapshot_id, timeout=timeout),
            )
