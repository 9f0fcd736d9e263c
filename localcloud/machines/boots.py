"""How many guests may boot at once on this host.

Every zone of localcloud runs on the same host, where a real cloud gives each zone its own
hypervisors. Under emulation a boot is CPU-bound: nine guests booting at once on two cores
(three zones of a test run) slow each other so much that the guests' own timeouts fire
(systemd waits 90 s for the root device) and they never reach sshd. So a poweron waits, in
state `starting` / "allocating node" as on a cloud looking for a hypervisor, while
LOCALCLOUD_MAX_BOOTING guests are booting (default: the host's CPU count). A guest stops
counting as booting when it says "booted" through the metadata service, when its VM stops,
or LOCALCLOUD_BOOT_HOLD_SECONDS (180) after it started (an image that never says so).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

WAIT_STEP = 1.0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


class BootGate:
    """At most `size` servers booting at once; the others wait their turn, first come first
    served (a zone's servers must not starve behind another zone's)."""

    def __init__(self, size: int | None = None, hold_seconds: float | None = None) -> None:
        self.size = max(1, size or _env_int("LOCALCLOUD_MAX_BOOTING", os.cpu_count() or 1))
        self.hold = hold_seconds or float(_env_int("LOCALCLOUD_BOOT_HOLD_SECONDS", 180))
        self._booting: dict[str, float] = {}  # server id -> when it stops counting anyway
        self._waiting: list[str] = []  # in arrival order
        self._cond = threading.Condition()

    def enter(self, server_id: str, give_up: Callable[[], bool]) -> bool:
        """Wait for a free place and take it; False if `give_up()` said so first."""
        with self._cond:
            if server_id in self._booting:
                return True
            self._waiting.append(server_id)
            try:
                while True:
                    now = time.monotonic()
                    for other, until in list(self._booting.items()):
                        if until <= now:
                            del self._booting[other]
                    free = self.size - len(self._booting)
                    if server_id in self._waiting[: max(0, free)]:
                        self._booting[server_id] = now + self.hold
                        return True
                    if give_up():
                        return False
                    self._cond.wait(WAIT_STEP)
            finally:
                self._waiting.remove(server_id)
                self._cond.notify_all()

    def leave(self, server_id: str) -> None:
        """The server booted, or its VM stopped: its place goes to the next one."""
        with self._cond:
            if self._booting.pop(server_id, None) is not None:
                self._cond.notify_all()

    def booting(self, server_id: str) -> bool:
        with self._cond:
            return server_id in self._booting
