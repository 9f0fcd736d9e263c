"""Server machine backends: what actually happens when a server is powered on, off, ...

The Instance API module owns the records and the state machine's rules (which action is
allowed when); a backend owns *how long* a transition takes and whatever runs behind it.
The timer backend (localcloud.machines.timer) only moves states on a schedule; a QEMU
backend can implement the same protocol later and boot real disks.

Transitions are stored on the record itself (`_pending`: a list of `[due_timestamp, patch]`)
and applied lazily whenever the record is read, so they survive a restart and follow
`cloud.clock` (an offset set by the operator moves them forward).
"""

from __future__ import annotations

from typing import Protocol

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
    nothing; the caller persists it. `advance` applies what is due and tells whether the
    record changed.
    """

    def power_on(self, server: dict) -> None: ...

    def power_off(self, server: dict) -> None: ...

    def reboot(self, server: dict) -> None: ...

    def stop_in_place(self, server: dict) -> None: ...

    def terminate(self, server: dict) -> None: ...

    def delete(self, server: dict) -> None: ...

    def advance(self, record: dict) -> bool: ...

    def schedule(self, record: dict, steps: list[dict]) -> None: ...
