"""Server machine backends: what actually happens when a server is powered on, off, ...

The Instance API module owns the records and the state machine's rules (which action is
allowed when); a backend owns *how long* a transition takes and whatever runs behind it.
The timer backend (localcloud.machines.timer) only moves states on a schedule; the QEMU
backend (localcloud.machines.qemu, `LOCALCLOUD_MACHINES=qemu`) boots real disks.

Timer transitions are stored on the record itself (`_pending`: a list of
`[due_timestamp, patch]`) and applied lazily whenever the record is read, so they survive a
restart and follow `cloud.clock` (an offset set by the operator moves them forward). The
QEMU backend does real work in background threads instead and writes the records itself
under `cloud.lock`; it still uses `_pending` for what the Instance API must apply (a
terminated server's `{_gone}`) and for the generic scheduler (private NICs, imports).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

# The observed state machine (reference §2.1): allowed actions per state.
ALLOWED_ACTIONS: dict[str, list[str]] = {
    "stopped": ["poweron", "backup"],
    "starting": ["stop_in_place", "backup"],
    "running": ["poweroff", "terminate", "reboot", "stop_in_place", "backup"],
    "stopping": ["backup"],
    "stopped in place": ["poweron", "poweroff", "terminate", "reboot", "backup"],
    "locked": [],
}
STOPPED_STATES = ("stopped", "stopped in place")
GONE = "_gone"  # a patch key: the record disappears when this transition is applied


def allowed_actions(state: str) -> list[str]:
    """The actions the API accepts for a server in `state`."""
    return list(ALLOWED_ACTIONS.get(state, []))


class MachineBackend(Protocol):
    """What the Instance API asks of the machine behind a server record.

    Each method mutates the server dict (state, state_detail, `_pending`) and returns
    nothing; the caller persists it. It must not wait for a machine: a backend that runs one
    sets the transitional state and finishes in the background. `advance` applies what is
    due and tells whether the record changed. The optional capabilities below (`capture`,
    `follow`, `refresh`, `endpoint`, `volume_deleted`, `discard_blob`) are called through the
    module functions of the same names, which give the timer's behaviour when absent.
    """

    def power_on(self, server: dict[str, Any]) -> None: ...

    def power_off(self, server: dict[str, Any]) -> None: ...

    def reboot(self, server: dict[str, Any]) -> None: ...

    def stop_in_place(self, server: dict[str, Any]) -> None: ...

    def terminate(self, server: dict[str, Any]) -> None: ...

    def delete(self, server: dict[str, Any]) -> None: ...

    def advance(self, record: dict[str, Any]) -> bool: ...

    def schedule(self, record: dict[str, Any], steps: list[dict[str, Any]]) -> None: ...


# --- optional capabilities ------------------------------------------------------------------
# A backend that runs real machines also implements the methods below; the Instance API calls
# them through these functions, which fall back to what the timer does (nothing runs, so a
# copy is a scheduled state change and there is nothing to forward or refresh).


def selected() -> str:
    """The backend named by LOCALCLOUD_MACHINES: "timer" (the default) or "qemu"."""
    return (os.environ.get("LOCALCLOUD_MACHINES") or "timer").strip().lower()


def capture(
    backend: Any, snapshot: dict[str, Any], volume: dict[str, Any], then: dict[str, Any]
) -> None:
    """Fill the new instance snapshot `snapshot` with the current data of the local volume
    `volume` (hot when its server runs), then apply `then` to the snapshot record."""
    method = getattr(backend, "capture", None)
    if method is None:
        backend.schedule(snapshot, [then])
    else:
        method(snapshot, volume, then)


def follow(
    backend: Any, image: dict[str, Any], snapshot_ids: list[str], then: dict[str, Any]
) -> None:
    """Apply `then` to the instance image `image` once its snapshots are complete."""
    method = getattr(backend, "follow", None)
    if method is None:
        backend.schedule(image, [then])
    else:
        method(image, snapshot_ids, then)


def refresh(backend: Any, server_id: str | None = None) -> None:
    """Something a running server depends on changed (volumes, private NICs, security group
    rules, IPs); None: possibly any server. The backend re-applies it in the background."""
    method = getattr(backend, "refresh", None)
    if method is not None:
        method(server_id)


def endpoint(backend: Any, server_id: str, port: int) -> dict[str, Any] | None:
    """Where the host reaches `port` of a server's guest: {"host", "port"}, or None."""
    method = getattr(backend, "endpoint", None)
    return method(server_id, port) if method is not None else None


def volume_deleted(backend: Any, volume_id: str) -> None:
    """A local volume record is gone: its data goes too."""
    method = getattr(backend, "volume_deleted", None)
    if method is not None:
        method(volume_id)


def discard_blob(backend: Any, path: Path) -> None:
    """A snapshot's data file is no longer needed by its record; a backend whose disks are
    copy-on-write views of it keeps it until the last one goes."""
    method = getattr(backend, "discard_blob", None)
    if method is None:
        path.unlink(missing_ok=True)
    else:
        method(path)
