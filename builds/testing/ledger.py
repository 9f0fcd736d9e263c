"""Every cloud resource a test run creates, and its deletion in dependency order.

A resource is written down the moment the API returns it, with the check that owns it (or
the zone's shared server chain). With a `Journal`, the ledger is also written on disk (the
run's TestRunResource rows) before the check that created the resource goes on: a worker
that dies leaves its ledger behind, and the worker that takes the run over deletes what it
lists (and what carries the run's tag, see `tagged`, for the instant between an API's
answer and that write) before it runs the unfinished checks again.

At the end of the run, whatever happened (pass, failure, error, cancel), the ledger deletes
what is left: servers first (terminating a running one also frees its local volumes, and
its private NICs go with it), then images, the snapshots under them, volumes, Block volumes
(a server's Block root outlives the server: deleting the server only detaches it), Block
snapshots (those of a Block root, and a backup's of a Block-rooted server, after the image
that holds them), security groups, private networks and IPs. The resources of a failed
check are kept instead when the run asks for it, so a person can look at them.

A deletion that fails is retried for a while (a volume still detaching, a private network
whose NICs are still going away), then reported; it never hides the check's own outcome.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from cloud import clients, waiters
from cloud.deletion import KIND_ORDER
from cloud.retries import CloudError, call

log = logging.getLogger(__name__)

Log = Callable[[str], None]

SERVER_SETTLED = ("running", "stopped", "stopped in place", "stopped_in_place")
RETRY_SECONDS = 2.0
# How long a check thread waits for its ledger write before it goes on without it (the
# writing thread is stuck: the resource is still in memory and still carries the run's tag).
JOURNAL_WAIT_SECONDS = 60.0


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

    @classmethod
    def from_env(cls) -> Apis:
        return cls(
            instance=clients.instance_api(), block=clients.block_api(), vpc=clients.vpc_api()
        )


Write = Callable[[str, Entry], None]  # ("add" | "forget", entry)


class Journal:
    """Writes ledger changes through `write`, always on the thread that made the journal.

    Check threads never touch the database (see `reporting`): a change made on another
    thread waits in a queue until that thread calls `flush()`, and the caller waits until it
    is written (or JOURNAL_WAIT_SECONDS), so a resource is on disk before its check goes on.
    """

    def __init__(self, write: Write, *, wait_seconds: float = JOURNAL_WAIT_SECONDS) -> None:
        self._write = write
        self._thread = threading.get_ident()
        self._queue: queue.SimpleQueue[tuple[str, Entry, threading.Event]] = queue.SimpleQueue()
        self._wait_seconds = wait_seconds
        self.pending = threading.Event()  # set while something waits for `flush()`

    def submit(self, op: str, entry: Entry) -> None:
        if threading.get_ident() == self._thread:
            self._apply(op, entry)
            return
        done = threading.Event()
        self._queue.put((op, entry, done))
        self.pending.set()
        if not done.wait(self._wait_seconds):
            log.warning("ledger: %s of %s not written after %gs", op, entry, self._wait_seconds)

    def flush(self) -> None:
        """Write what other threads handed over (on the journal's own thread)."""
        self.pending.clear()
        while True:
            try:
                op, entry, done = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                self._apply(op, entry)
            finally:
                done.set()

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, less when a write is waiting."""
        self.pending.wait(seconds)

    def _apply(self, op: str, entry: Entry) -> None:
        try:
            self._write(op, entry)
        except Exception:
            # The in-memory ledger still deletes it at the end, and its tag still finds it.
            log.exception("ledger: could not write %s of %s", op, entry)


class Ledger:
    """The resources of one run, safe to add to from several check threads; written through
    `journal` when there is one."""

    def __init__(self, journal: Journal | None = None) -> None:
        self._entries: list[Entry] = []
        self._lock = threading.Lock()
        self.journal = journal

    def add(self, entry: Entry) -> Entry:
        if self.journal is not None:
            self.journal.submit("add", entry)
        with self._lock:
            self._entries.append(entry)
        return entry

    def restore(self, entries: list[Entry]) -> None:
        """Entries already written (by an earlier worker): in memory only."""
        with self._lock:
            known = {(e.kind, e.id) for e in self._entries}
            self._entries.extend(e for e in entries if (e.kind, e.id) not in known)

    def forget(self, kind: str, id_: str) -> None:
        """The resource is deleted (by a check itself, or by `clean`)."""
        with self._lock:
            gone = [e for e in self._entries if (e.kind, e.id) == (kind, id_)]
            self._entries = [e for e in self._entries if (e.kind, e.id) != (kind, id_)]
        if self.journal is not None:
            for entry in gone:
                self.journal.submit("forget", entry)

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
            functools.partial(
                call,
                api.delete_volume,
                volume_id=volume_id,
                zone=zone,
                what=f"delete volume {volume_id}",
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


# --- finding what a run left, by its tag -------------------------------------------------------


def tagged(apis: Apis, *, zone: str, region: str, tag: str, owner: str = "") -> list[Entry]:
    """Everything carrying `tag` in a run's zone (and its region's private networks), as
    entries of `owner`: what a worker that died may have created without writing it down.

    The list filters' tag semantics differ between APIs (all of, any of): the tag is checked
    again on each item. A listing that fails raises: a takeover must not start the checks
    again believing the zone is clean when it could not look.
    """
    instance, block = apis.instance, apis.block
    listings: list[tuple[str, Callable[[], list[Any]]]] = [
        ("server", lambda: instance.list_servers_all(zone=zone, tags=[tag])),
        ("image", lambda: instance.list_images_all(zone=zone, tags=tag)),
        ("snapshot", lambda: instance.list_snapshots_all(zone=zone, tags=tag)),
        ("volume", lambda: instance.list_volumes_all(zone=zone, tags=[tag])),
        (
            "block_volume",
            lambda: block.list_volumes_all(zone=zone, tags=[tag], include_deleted=False),
        ),
        (
            "block_snapshot",
            lambda: block.list_snapshots_all(zone=zone, tags=[tag], include_deleted=False),
        ),
        ("security_group", lambda: instance.list_security_groups_all(zone=zone, tags=[tag])),
        ("ip", lambda: instance.list_ips_all(zone=zone, tags=[tag])),
        (
            "private_network",
            lambda: apis.vpc.list_private_networks_all(region=region, tags=[tag]),
        ),
    ]
    found: list[Entry] = []
    for kind, listing in listings:
        where = region if kind == "private_network" else zone
        items = call(listing, what=f"list {kind.replace('_', ' ')}s tagged {tag} in {where}")
        for item in items:
            if tag not in (getattr(item, "tags", None) or []):
                continue
            name = getattr(item, "name", "") or (getattr(item, "address", "") or "")
            found.append(
                Entry(
                    kind=kind,
                    id=item.id,
                    owner=owner,
                    zone=zone,
                    name=str(name),
                    region=region if kind == "private_network" else "",
                )
            )
    return found
