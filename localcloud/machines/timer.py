"""The timer backend: no machine at all, states move on a schedule driven by cloud.clock.

Each transition is stored on the record as `[due_timestamp, patch]` in `_pending` and
applied when the record is next read (`advance`). The step duration is
`LOCALCLOUD_TRANSITION_SECONDS` (float, default 1.0; 0 makes every transition immediate on
the next read, which fast tests use).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from localcloud.machines import GONE


def default_transition_seconds() -> float:
    """The step duration from LOCALCLOUD_TRANSITION_SECONDS (default 1.0)."""
    try:
        return max(0.0, float(os.environ.get("LOCALCLOUD_TRANSITION_SECONDS", "1.0")))
    except ValueError:
        return 1.0


class TimerBackend:
    """Schedules server (and any record's) transitions `step` seconds apart."""

    def __init__(self, now: Callable[[], float], step: float | None = None) -> None:
        self.now = now
        self.step = default_transition_seconds() if step is None else step

    # --- the generic scheduler, also used for snapshots, images and private NICs ---------

    def schedule(self, record: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Replace the record's pending transitions with `steps`, one step apart each."""
        start = self.now()
        record["_pending"] = [[start + self.step * (i + 1), patch] for i, patch in enumerate(steps)]

    def advance(self, record: dict[str, Any]) -> bool:
        """Apply every transition that is due; True if the record changed."""
        pending = record.get("_pending") or []
        now = self.now()
        changed = False
        while pending and pending[0][0] <= now:
            _, patch = pending.pop(0)
            record.update(patch)
            changed = True
            if patch.get(GONE):
                break
        record["_pending"] = pending
        return changed

    # --- servers ---------------------------------------------------------------------------

    def _begin(
        self, server: dict[str, Any], state: str, detail: str, steps: list[dict[str, Any]]
    ) -> None:
        server["state"], server["state_detail"] = state, detail
        self.schedule(server, steps)

    def power_on(self, server: dict[str, Any]) -> None:
        self._begin(
            server,
            "starting",
            "allocating node",
            [
                {"state": "starting", "state_detail": "provisioning node"},
                {"state": "running", "state_detail": "booting kernel"},
            ],
        )

    def power_off(self, server: dict[str, Any]) -> None:
        self._begin(server, "stopping", "stopping", [{"state": "stopped", "state_detail": ""}])

    def stop_in_place(self, server: dict[str, Any]) -> None:
        self._begin(
            server,
            "stopping",
            "stopping in place",
            [{"state": "stopped in place", "state_detail": "stopped in place"}],
        )

    def reboot(self, server: dict[str, Any]) -> None:
        self._begin(
            server,
            "stopping",
            "rebooting",
            [
                {"state": "starting", "state_detail": "rebooting"},
                {"state": "running", "state_detail": "booting kernel"},
            ],
        )

    def terminate(self, server: dict[str, Any]) -> None:
        self._begin(server, "stopping", "terminating", [{GONE: True}])

    def delete(self, server: dict[str, Any]) -> None:
        """Nothing runs behind a timer server: nothing to free."""
