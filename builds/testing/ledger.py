"""Every cloud resource a test run creates, and its deletion in dependency order.

A resource is written down the moment the API returns it, with the check that owns it (or
the zone's shared server chain). At the end of the run, whatever happened (pass, failure,
error, cancel), the ledger deletes what is left: servers first (terminating a running one
also frees its local volumes, and its private NICs go with it), then images, the snapshots
under them, volumes, security groups, private networks and IPs. The resources of a failed
check are kept instead when the run asks for it, so a person can look at them.

A deletion that fails is retried for a while (a volume still detaching, a private network
whose NICs are still going away), then reported; it never hides the check's own outcome.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from cloud import waiters
from cloud.retries import CloudError, call

Log = Callable[[str], None]

# Deletion order: what holds something goes before what it holds.
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
)
SERVER_SETTLED = ("running", "stopped", "stopped in place", "stopped_in_place")
RETRY_SECONDS = 2.0


@dataclass
class Entry:
    """One resource a run created."""

    kind: str
    id: str
    owner: str  # the check it belongs to, or the shared chain's owner name
    zone: str
    name: str = ""
    region: str = ""

    def describe(self) -> str:
        label = self.kind.replace("_", " ")
        return f"{label} {self.id}" + (f" ({self.name})" if self.name else "")

    def as_record(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Apis:
    """The SDK API objects the deletions use."""

    instance: Any
    block: Any
    vpc: Any


class Ledger:
    """The resources of one run, safe to add to from several check threads."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._lock = threading.Lock()

    def add(self, entry: Entry) -> Entry:
        with self._lock:
            self._entries.append(entry)
        return entry

    def forget(self, kind: str, id_: str) -> None:
        """A check deleted the resource itself."""
        with self._lock:
            self._entries = [e for e in self._entries if (e.kind, e.id) != (kind, id_)]

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def in_order(self) -> list[Entry]:
        """Deletion order: by kind, and the latest created first within a kind."""
        entries = self.entries()
        ranked = [(KIND_ORDER.index(e.kind), -position, e) for position, e in enumerate(entries)]
        return [e for _, _, e in sorted(ranked, key=lambda item: (item[0], item[1]))]

    def clean(
        self,
        apis: Apis,
        *,
        keep: Callable[[Entry], bool],
        log: Callable[[Entry, str], None],
        timeout: float,
    ) -> tuple[list[Entry], list[str]]:
        """Delete everything not kept; return (kept entries, errors)."""
        kept: list[Entry] = []
        errors: list[str] = []
        for entry in self.in_order():
            if keep(entry):
                kept.append(entry)
                log(entry, f"kept for debugging: {entry.describe()}")
                continue
            try:
                delete(apis, entry, timeout=timeout)
            except Exception as exc:
                errors.append(f"{entry.describe()}: {exc}")
                log(entry, f"could not delete {entry.describe()}: {exc}")
            else:
                self.forget(entry.kind, entry.id)
                log(entry, f"deleted {entry.describe()}")
        return kept, errors


# --- deleting one resource ---------------------------------------------------------------------


def _gone(action: Callable[[], Any]) -> bool:
    """Run a lookup or a delete; True when the resource does not exist (any more)."""
    try:
        action()
    except CloudError as exc:
        if exc.not_found:
            return True
        raise
    return False


def _until_accepted(action: Callable[[], Any], *, timeout: float) -> None:
    """Retry a delete the API refuses for now (still attached, still in use, transient)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _gone(action)
            return
        except CloudError as exc:
            if exc.status is None or exc.status >= 500 or time.monotonic() >= deadline:
                raise
        time.sleep(RETRY_SECONDS)


def _delete_server(api: Any, entry: Entry, timeout: float) -> None:
    zone, server_id = entry.zone, entry.id
    what = f"server {server_id} in {zone}"

    def get() -> Any:
        return call(api.get_server, server_id=server_id, zone=zone, what=f"get {what}").server

    box: dict[str, Any] = {}
    if _gone(lambda: box.update(server=get())):
        return
    server = box["server"]
    if str(server.state) not in SERVER_SETTLED:
        server = waiters.wait_for_server(
            api, zone, server_id, until=SERVER_SETTLED, timeout=timeout
        )
    local = [
        v.id
        for v in (server.volumes or {}).values()
        if str(getattr(v, "volume_type", "")) == "l_ssd"
    ]
    if str(server.state) == "stopped":
        _until_accepted(
            lambda: call(api.delete_server, server_id=server_id, zone=zone, what=f"delete {what}"),
            timeout=timeout,
        )
    else:
        # Terminate stops and deletes in one go, local volumes included.
        _gone(
            lambda: call(
                api.server_action,
                server_id=server_id,
                zone=zone,
                action="terminate",
                what=f"terminate {what}",
            )
        )
        waiters.wait_until_gone(get, what=what, timeout=timeout)
    for volume_id in local:
        _until_accepted(
            lambda volume_id=volume_id: call(
                api.delete_volume, volume_id=volume_id, zone=zone, what=f"delete volume {volume_id}"
            ),
            timeout=timeout,
        )


def _delete_snapshot(api: Any, entry: Entry, timeout: float) -> None:
    zone = entry.zone
    box: dict[str, Any] = {}
    get = lambda: box.update(  # noqa: E731
        snapshot=call(api.get_snapshot, snapshot_id=entry.id, zone=zone, what="get snapshot")
    )
    if _gone(get):
        return
    if str(box["snapshot"].snapshot.state) in ("snapshotting", "importing", "exporting"):
        waiters.wait_for_snapshot(
            api, zone, entry.id, timeout=timeout, until=("available", "error", "invalid_data")
        )
    _until_accepted(
        lambda: call(api.delete_snapshot, snapshot_id=entry.id, zone=zone, what="delete snapshot"),
        timeout=timeout,
    )


def _delete_block_volume(api: Any, instance: Any, entry: Entry, timeout: float) -> None:
    zone = entry.zone
    box: dict[str, Any] = {}
    get = lambda: box.update(  # noqa: E731
        volume=call(api.get_volume, volume_id=entry.id, zone=zone, what="get block volume")
    )
    if _gone(get):
        return
    for ref in box["volume"].references or []:
        if str(getattr(ref, "product_resource_type", "")) == "instance_server":
            # Already detached, or the server went away: the delete says what is left.
            with contextlib.suppress(CloudError):
                call(
                    instance.detach_server_volume,
                    server_id=ref.product_resource_id,
                    volume_id=entry.id,
                    zone=zone,
                    what=f"detach block volume {entry.id}",
                )
    _until_accepted(
        lambda: call(api.delete_volume, volume_id=entry.id, zone=zone, what="delete block volume"),
        timeout=timeout,
    )


def delete(apis: Apis, entry: Entry, *, timeout: float) -> None:
    """Delete one resource; a resource already gone counts as deleted."""
    zone, id_ = entry.zone, entry.id
    instance = apis.instance
    if entry.kind == "server":
        _delete_server(instance, entry, timeout)
    elif entry.kind == "image":
        _gone(lambda: call(instance.delete_image, image_id=id_, zone=zone, what="delete image"))
    elif entry.kind == "snapshot":
        _delete_snapshot(instance, entry, timeout)
    elif entry.kind == "volume":
        _until_accepted(
            lambda: call(instance.delete_volume, volume_id=id_, zone=zone, what="delete volume"),
            timeout=timeout,
        )
    elif entry.kind == "block_volume":
        _delete_block_volume(apis.block, instance, entry, timeout)
    elif entry.kind == "block_snapshot":
        _until_accepted(
            lambda: call(
                apis.block.delete_snapshot, snapshot_id=id_, zone=zone, what="delete snapshot"
            ),
            timeout=timeout,
        )
    elif entry.kind == "security_group":
        _until_accepted(
            lambda: call(
                instance.delete_security_group,
                security_group_id=id_,
                zone=zone,
                what="delete security group",
            ),
            timeout=timeout,
        )
    elif entry.kind == "private_network":
        _until_accepted(
            lambda: call(
                apis.vpc.delete_private_network,
                private_network_id=id_,
                region=entry.region,
                what="delete private network",
            ),
            timeout=timeout,
        )
    elif entry.kind == "ip":
        _gone(lambda: call(instance.delete_ip, ip=id_, zone=zone, what="delete IP"))
    else:
        raise ValueError(f"unknown resource kind {entry.kind}")
