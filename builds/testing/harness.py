"""What a check acts with: servers booted from the image under test, SSH into them, the
cloud APIs, its own log, and a way to say that this cloud cannot provide an assertion.

A run tests one local image of one storage type. On local storage (`instance_local`) the
servers' roots are l_ssd volumes of the Instance API; on Block Storage (`instance_sbs`) they
are Block volumes (`sbs_volume`), visible only through the Block API: their snapshots (and a
backup's) are Block snapshots, and the ledger records and deletes them there.

One `Harness` per test run holds what the checks share: the run's SSH key, the ledger of
created resources, the SDK API objects, the cancel flag and the zone's shared server. Each
check gets a `CheckContext` bound to its name: everything it logs goes to its own result,
and everything it creates is written in the ledger under its name (so that the resources of
a failed check can be kept for debugging while the others are deleted).

Checks run in worker threads and never touch the database; see `reporting`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from scaleway.instance.v1 import VolumeServerTemplate

from builds.testing import ssh
from builds.testing.ledger import Apis, Entry, Journal, Ledger, delete
from builds.testing.outcomes import CheckFailed
from builds.testing.registry import SHARED, SOURCE
from builds.testing.reporting import Reporter
from cloud import clients, endpoints, tags, waiters
from cloud.cancel import Cancelled
from cloud.retries import CloudError, call

if TYPE_CHECKING:
    from builds.testing.source import Capture, Source

T = TypeVar("T")

__all__ = ["SHARED", "SOURCE", "CheckContext", "Harness", "RunSpec"]
# What a cancel says wherever a check logs it, whichever call noticed the cancel.
RUN_CANCELLED = "the test run was cancelled"
STOPPED = ("stopped",)
STOPPED_IN_PLACE = ("stopped in place", "stopped_in_place")
RUNNING = ("running",)
SETTLED = ("running", "stopped", "stopped in place", "stopped_in_place")
BOOTING_ACTIONS = ("poweron", "reboot")
SSH_RETRY_SECONDS = 3.0
SAME_BOOT_GRACE = 60.0  # how long the old boot may still answer after a restarting action


# A run's storage types, as catalog.choices.StorageType names them (the Marketplace's words).
LOCAL_STORAGE = "instance_local"
BLOCK_STORAGE = "instance_sbs"
# How a server's volume of each kind shows in the Instance API's `volumes`.
LOCAL_VOLUME = "l_ssd"
BLOCK_VOLUME = "sbs_volume"


@dataclass(frozen=True)
class RunSpec:
    """Everything about the run that the checks need, with no database row in it."""

    test_run_id: int
    zone: str
    image_id: str
    tags: tuple[str, ...]
    keep_on_failure: bool
    commercial_type: str
    boot_timeout: float
    ssh_timeout: float
    action_timeout: float
    ssh_user: str = "root"
    storage_type: str = LOCAL_STORAGE

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    @property
    def block(self) -> bool:
        """The image under test boots from Block Storage: its servers have Block roots."""
        return self.storage_type == BLOCK_STORAGE

    @property
    def root_volume_type(self) -> str:
        return BLOCK_VOLUME if self.block else LOCAL_VOLUME

    @property
    def run_tag(self) -> str:
        return tags.run_tag(self.test_run_id)


class Harness:
    """The shared state of one test run in one zone."""

    def __init__(
        self,
        spec: RunSpec,
        reporter: Reporter,
        stop: threading.Event,
        journal: Journal | None = None,
    ) -> None:
        self.spec = spec
        self.reporter = reporter
        self.stop = stop
        self.ledger = Ledger(journal)
        self.key: ssh.KeyPair | None = None
        self.apis = Apis.from_env()
        self.ipam = clients.ipam_api()
        self.names: dict[str, str] = {}  # server id -> name, for logs
        self._endpoints: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        # The zone's shared server, and the checks behind each shared owner (SHARED: the
        # chain on that server; SOURCE: the checks that copy the source server). A line about
        # a shared resource goes to each of its checks' logs.
        self.shared_server: str | None = None
        self.groups: dict[str, list[str]] = {SHARED: [], SOURCE: []}
        self.source: Source | None = None

    # --- life -------------------------------------------------------------------------------
    def open(self) -> None:
        self.key = ssh.new_key()

    def close(self, failed: Collection[str]) -> tuple[list[Entry], list[str]]:
        """Delete what the run created (keeping what failed checks own, when asked), then
        remove the key. Returns (kept entries, deletion errors)."""
        failed = set(failed)

        def keep(entry: Entry) -> bool:
            if not self.spec.keep_on_failure:
                return False
            return entry.owner in failed or bool(failed & set(self.groups.get(entry.owner, ())))

        try:
            return self.ledger.clean(
                self.apis,
                keep=keep,
                log=lambda entry, text: self.log_to(entry.owner, text),
                timeout=self.spec.action_timeout,
            )
        finally:
            if self.key is not None:
                self.key.remove()

    def cancelled(self) -> bool:
        return self.stop.is_set()

    def log_to(self, owner: str, text: str) -> None:
        for name in self.groups.get(owner) or [owner]:
            self.reporter.log(name, text)

    def context(self, check: str) -> CheckContext:
        return CheckContext(self, check)

    # --- endpoints --------------------------------------------------------------------------
    def endpoint(self, server_id: str, *, refresh: bool = False) -> tuple[str, int]:
        with self._lock:
            known = None if refresh else self._endpoints.get(server_id)
        if known:
            return known
        found = endpoints.ssh_endpoint(self.spec.zone, server_id)
        with self._lock:
            self._endpoints[server_id] = found
        return found

    def forget_endpoint(self, server_id: str) -> None:
        with self._lock:
            self._endpoints.pop(server_id, None)


class CheckContext:
    """One check's view of the harness (see the module docstring)."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name
        self.not_applicable_items: list[str] = []
        self.server: str | None = None  # the shared server, for checks chained on it
        # True once a command succeeded in a guest: the check proved something there.
        self.proved_anything = False

    # --- plain facts ------------------------------------------------------------------------
    @property
    def spec(self) -> RunSpec:
        return self.harness.spec

    @property
    def zone(self) -> str:
        return self.spec.zone

    @property
    def region(self) -> str:
        return self.spec.region

    @property
    def instance(self) -> Any:
        return self.harness.apis.instance

    @property
    def block(self) -> Any:
        return self.harness.apis.block

    @property
    def vpc(self) -> Any:
        return self.harness.apis.vpc

    @property
    def ipam(self) -> Any:
        return self.harness.ipam

    def tags(self) -> list[str]:
        """The tags of everything the run creates (the factory's, and the run's own)."""
        return list(self.spec.tags)

    def resource_name(self, label: str) -> str:
        """A name unique to the run that is also a valid host name."""
        return f"test-{self.spec.test_run_id}-{label}"

    def label(self, server_id: str) -> str:
        return self.harness.names.get(server_id, server_id)

    # --- reporting and cancel ---------------------------------------------------------------
    def log(self, text: str) -> None:
        self.harness.log_to(self.name, text)

    def not_applicable(self, text: str) -> None:
        """An assertion this cloud cannot provide: reported, never counted as passed."""
        self.not_applicable_items.append(text)
        self.log(f"not applicable on this cloud: {text}")

    def checkpoint(self) -> None:
        if self.harness.cancelled():
            raise Cancelled(RUN_CANCELLED)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.checkpoint()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def call(self, fn: Callable[..., T], *, what: str, **kwargs: Any) -> T:
        """An SDK call through cloud.retries (retries, deadline, cancel)."""
        try:
            result: T = call(fn, what=what, cancelled=self.harness.cancelled, **kwargs)
            return result
        except Cancelled as exc:
            raise Cancelled(RUN_CANCELLED) from exc

    def wait(self, waiter: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A cloud.waiters wait with the run's action timeout and cancel."""
        kwargs.setdefault("timeout", self.spec.action_timeout)
        try:
            return waiter(*args, cancelled=self.harness.cancelled, **kwargs)
        except Cancelled as exc:
            raise Cancelled(RUN_CANCELLED) from exc

    def captured(self) -> Capture:
        """This check's copy of the source server (made by the first check that asks)."""
        assert self.harness.source is not None, "the run has no source server"
        return self.harness.source.captured(self)

    # --- the ledger -------------------------------------------------------------------------
    def record(self, kind: str, id_: str, *, name: str = "", owner: str | None = None) -> None:
        """Write a created resource down, so that the run deletes it at the end."""
        region = self.region if kind == "private_network" else ""
        self.harness.ledger.add(
            Entry(
                kind=kind,
                id=id_,
                owner=owner or self.name,
                zone=self.zone,
                name=name,
                region=region,
            )
        )
        self.log(f"created {kind.replace('_', ' ')} {id_}" + (f" ({name})" if name else ""))

    def forget(self, kind: str, id_: str) -> None:
        """The check deleted the resource itself."""
        self.harness.ledger.forget(kind, id_)

    # --- servers ----------------------------------------------------------------------------
    def create_server(
        self,
        label: str,
        *,
        image: str | None = None,
        base_snapshot: str | None = None,
        start: bool = True,
        owner: str | None = None,
    ) -> str:
        """Create a server from the image under test (or `image`, or a root snapshot), carrying
        the run's key and tags; power it on and wait for SSH unless `start` is False."""
        key = self.harness.key
        assert key is not None, "the harness is not open"
        name = self.resource_name(label)
        volumes = None
        if base_snapshot:
            # A root made from a snapshot of the run's storage: an l_ssd volume from an
            # Instance snapshot, a Block volume from a Block snapshot.
            volumes = {
                "0": VolumeServerTemplate(
                    volume_type=self.spec.root_volume_type,
                    base_snapshot=base_snapshot,
                    name=f"{name}-root",
                    size=None,
                    boot=None,
                )
            }
        elif image is None:
            image = self.spec.image_id
        api = self.instance
        run_tag = self.spec.run_tag

        def recover() -> Any:
            # A create whose answer was lost may have made the server: find it by name and tag.
            server = tags.find_one(
                api.list_servers_all,
                what=f"look for server {name}",
                carrying=[run_tag],
                name=name,
                zone=self.zone,
                tags=[run_tag],
            )
            return SimpleNamespace(server=server) if server is not None else None

        server = self.call(
            api.create_server,
            what=f"create server {name} in {self.zone}",
            recover=recover,
            zone=self.zone,
            commercial_type=self.spec.commercial_type,
            name=name,
            image=image,
            volumes=volumes,
            dynamic_ip_required=True,
            tags=[*self.tags(), key.tag],
        ).server
        self.harness.names[server.id] = name
        self.record("server", server.id, name=name, owner=owner)
        for volume in (server.volumes or {}).values():
            volume_type = str(getattr(volume, "volume_type", ""))
            if volume_type == LOCAL_VOLUME:
                self.harness.ledger.add(
                    Entry(kind="volume", id=volume.id, owner=owner or self.name, zone=self.zone)
                )
            elif volume_type == BLOCK_VOLUME:
                # A Block root outlives its server (deleting the server detaches it): the
                # run deletes it after the server, and tags it so the janitor finds it too.
                self.record("block_volume", volume.id, owner=owner)
                self._tag_block_volume(volume.id)
        if start:
            self.power_on(server.id)
        return str(server.id)

    def _tag_block_volume(self, volume_id: str) -> None:
        try:
            self.call(
                self.block.update_volume,
                what=f"tag block volume {volume_id}",
                zone=self.zone,
                volume_id=volume_id,
                tags=self.tags(),
            )
        except CloudError as exc:
            self.log(f"could not tag block volume {volume_id}: {exc}")

    def release(self, server_id: str) -> None:
        """Delete a server the check no longer needs now, so that its VM stops using the
        host's CPU while the other checks run (its snapshots and images stay recorded)."""
        self.checkpoint()
        entry = Entry(kind="server", id=server_id, owner=self.name, zone=self.zone)
        delete(self.harness.apis, entry, timeout=self.spec.action_timeout)
        self.forget("server", server_id)
        self.log(f"deleted server {self.label(server_id)}")

    def get_server(self, server_id: str) -> Any:
        return self.call(
            self.instance.get_server,
            what=f"get server {self.label(server_id)}",
            server_id=server_id,
            zone=self.zone,
        ).server

    def root_volume(self, server_id: str) -> Any:
        """The server's root volume as the Instance API lists it in the server's `volumes`
        (its `volume_type` says which API holds it: l_ssd, or sbs_volume for Block)."""
        volumes = self.get_server(server_id).volumes or {}
        root = volumes.get("0") or next(iter(volumes.values()), None)
        if root is None:
            raise CheckFailed(f"server {self.label(server_id)} has no root volume")
        wanted = self.spec.root_volume_type
        found = str(getattr(root, "volume_type", "") or "")
        if found and found != wanted:
            raise CheckFailed(
                f"server {self.label(server_id)} has a {found} root volume, not {wanted} as a "
                f"server from a {'Block Storage' if self.spec.block else 'local'} image must"
            )
        return root

    def block_volume(self, volume_id: str) -> Any:
        """A volume as the Block API shows it."""
        return self.call(
            self.block.get_volume,
            what=f"get block volume {volume_id}",
            zone=self.zone,
            volume_id=volume_id,
        )

    def act(
        self,
        server_id: str,
        action: str,
        until: Collection[str],
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run a server action and wait until the server reaches one of `until` (within the
        boot timeout for an action that starts the VM: the cloud may first have to find it a
        hypervisor, and localcloud queues boots when the host is busy)."""
        if timeout is None and action in BOOTING_ACTIONS:
            timeout = self.spec.boot_timeout
        self.checkpoint()
        label = self.label(server_id)
        self.log(f"server {label}: {action}")
        self.call(
            self.instance.server_action,
            what=f"{action} server {label}",
            server_id=server_id,
            zone=self.zone,
            action=action,
        )
        self.harness.forget_endpoint(server_id)
        if action == "reboot":
            # The state may still read "running" right after the call: see it leave first.
            leave_by = time.monotonic() + 30
            while time.monotonic() < leave_by:
                if str(self.get_server(server_id).state) != "running":
                    break
                self.sleep(1)
        server = self.wait(
            waiters.wait_for_server,
            self.instance,
            self.zone,
            server_id,
            until=until,
            timeout=timeout or self.spec.action_timeout,
        )
        self.log(f"server {label}: {server.state}")
        return server

    def power_on(self, server_id: str) -> None:
        """Power on and wait until SSH answers, within the boot timeout once it runs."""
        self.act(server_id, "poweron", RUNNING)
        self.wait_ssh(server_id)

    def power_off(self, server_id: str) -> None:
        self.act(server_id, "poweroff", STOPPED)

    def wait_ssh(self, server_id: str, *, started: float | None = None) -> tuple[str, int]:
        """Wait until `ssh true` works, at most the boot timeout after `started` (now; the
        server is running: its boot started)."""
        timeout = self.spec.boot_timeout
        started = time.monotonic() if started is None else started
        deadline = started + timeout
        label = self.label(server_id)
        self.log(f"waiting for SSH on {label} (up to {timeout:g} s after power-on)")
        key = self.harness.key
        assert key is not None
        last = "no attempt"
        while True:
            self.checkpoint()
            try:
                host, port = self.harness.endpoint(server_id, refresh=True)
                remaining = max(1.0, deadline - time.monotonic())
                result = ssh.run(
                    key,
                    host,
                    port,
                    "true",
                    user=self.spec.ssh_user,
                    timeout=min(self.spec.ssh_timeout, remaining + 5),
                    connect_timeout=min(10.0, remaining),
                )
                if result.ok:
                    self.log(
                        f"SSH answered on {label} at {host}:{port} after "
                        f"{time.monotonic() - started:.0f} s"
                    )
                    return host, port
                last = f"{host}:{port}: {result.last_error()}"
            except ssh.SshTimeout as exc:
                last = str(exc)
            except CloudError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                self.log(f"last SSH attempt: {last}")
                raise CheckFailed(f"SSH did not answer on {label} within {timeout:g} s ({last})")
            self.sleep(min(SSH_RETRY_SECONDS, max(0.0, deadline - time.monotonic())))

    def ssh(
        self,
        server_id: str,
        command: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        quiet: bool = False,
    ) -> ssh.Result:
        """Run a command in the guest, logging it and its (trimmed) output.

        With `check`, a non-zero exit is a failed check that names the command. A connection
        that fails is tried once more on a freshly looked-up endpoint.
        """
        self.checkpoint()
        key = self.harness.key
        assert key is not None
        timeout = timeout or self.spec.ssh_timeout
        label = self.label(server_id)
        self.log(f"[{label}] $ {command}")
        result: ssh.Result | None = None
        for attempt in (1, 2):
            host, port = self.harness.endpoint(server_id, refresh=attempt > 1)
            try:
                result = ssh.run(key, host, port, command, user=self.spec.ssh_user, timeout=timeout)
            except ssh.SshTimeout as exc:
                self.log(str(exc))
                raise CheckFailed(f"on {label}: {exc}") from exc
            if not result.unreachable:
                break
            self.log(f"SSH connection failed: {result.last_error()}")
            if attempt == 1:
                self.sleep(SSH_RETRY_SECONDS)
        assert result is not None
        if not quiet and result.stdout.strip():
            self.log(ssh.trimmed(result.stdout))
        if not quiet and result.stderr.strip():
            self.log("stderr: " + ssh.trimmed(result.stderr, 600))
        if not result.ok:
            self.log(f"(exit {result.status})")
        if result.unreachable:
            raise CheckFailed(f"SSH to {label} failed: {result.last_error()}")
        if check and not result.ok:
            raise CheckFailed(
                f"`{command}` failed on {label} (exit {result.status}: {result.last_error()})"
            )
        if result.ok:
            self.proved_anything = True
        return result

    def output(self, server_id: str, command: str, **kwargs: Any) -> str:
        """A command's standard output, stripped (the command must succeed)."""
        return self.ssh(server_id, command, **kwargs).stdout.strip()

    def boot_id(self, server_id: str) -> str:
        return self.output(server_id, "cat /proc/sys/kernel/random/boot_id")

    def wait_for_new_boot(
        self, server_id: str, old_boot_id: str, *, after: str, started: float | None = None
    ) -> str:
        """After an action that restarts the guest, wait until SSH answers from a new boot.

        The boot id must change: a guest that never went down keeps it. Once the old boot
        has answered for SAME_BOOT_GRACE seconds after the action, it is not going down.
        """
        started = time.monotonic() if started is None else started
        deadline = started + self.spec.boot_timeout
        same_since: float | None = None
        while True:
            self.wait_ssh(server_id, started=started)
            try:
                current: str | None = self.boot_id(server_id)
            except CheckFailed as exc:  # going down between two commands: try again
                self.log(f"not answering yet: {exc}")
                current = None
            if current and current != old_boot_id:
                return current
            now = time.monotonic()
            if current == old_boot_id and same_since is None:
                same_since = now
            if now >= deadline or (same_since is not None and now - same_since >= SAME_BOOT_GRACE):
                raise CheckFailed(f"boot id did not change after {after}")
            self.sleep(SSH_RETRY_SECONDS)

    def write_marker(self, server_id: str, path: str = "/root/factory-check-marker") -> str:
        """Write a random token to a file and flush it to disk; return the token."""
        token = self.output(server_id, "cat /proc/sys/kernel/random/uuid")
        self.ssh(server_id, f"echo {token} > {path} && sync && cat {path}")
        return token

    def read_marker(self, server_id: str, path: str = "/root/factory-check-marker") -> str | None:
        result = self.ssh(server_id, f"cat {path}", check=False)
        return result.stdout.strip() if result.ok else None

    # --- snapshots and images ---------------------------------------------------------------
    def snapshot_root(self, server_id: str, label: str) -> Any:
        """A snapshot of the server's root volume through the API its storage needs (an
        Instance snapshot of an l_ssd root, a Block snapshot of a Block root), waited for
        until available. Its `id` is what a server's root is made from."""
        root = self.root_volume(server_id)
        if self.spec.block:
            return self.snapshot_block_volume(root.id, label)
        return self.snapshot_volume(root.id, label)

    def snapshot_block_volume(self, volume_id: str, label: str) -> Any:
        """A Block snapshot of a Block volume, waited for until available."""
        name = self.resource_name(label)
        api = self.block
        run_tag = self.spec.run_tag

        def recover() -> Any:
            return tags.find_one(
                api.list_snapshots_all,
                what=f"look for block snapshot {name}",
                carrying=[run_tag],
                name=name,
                zone=self.zone,
                tags=[run_tag],
                include_deleted=False,
            )

        snapshot = self.call(
            api.create_snapshot,
            what=f"snapshot block volume {volume_id}",
            recover=recover,
            zone=self.zone,
            volume_id=volume_id,
            public=False,
            name=name,
            tags=self.tags(),
        )
        self.record("block_snapshot", snapshot.id, name=name)
        snapshot = self.wait(waiters.wait_for_block_snapshot, api, self.zone, snapshot.id)
        self.log(f"block snapshot {snapshot.id} is {snapshot.status}")
        return snapshot

    def snapshot_volume(self, volume_id: str, label: str) -> Any:
        """An instance snapshot of a local volume, waited for until available."""
        name = self.resource_name(label)
        api = self.instance
        run_tag = self.spec.run_tag

        def recover() -> Any:
            snapshot = tags.find_one(
                api.list_snapshots_all,
                what=f"look for snapshot {name}",
                carrying=[run_tag],
                name=name,
                zone=self.zone,
                tags=run_tag,
            )
            return SimpleNamespace(snapshot=snapshot) if snapshot is not None else None

        snapshot = self.call(
            api.create_snapshot,
            what=f"snapshot volume {volume_id}",
            recover=recover,
            zone=self.zone,
            volume_id=volume_id,
            name=name,
            tags=self.tags(),
        ).snapshot
        self.record("snapshot", snapshot.id, name=name)
        snapshot = self.wait(waiters.wait_for_snapshot, api, self.zone, snapshot.id)
        self.log(f"snapshot {snapshot.id} is {snapshot.state}")
        return snapshot
