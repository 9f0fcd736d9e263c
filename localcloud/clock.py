"""localcloud's time: the real time plus an offset the operator can set, so that tests can
move localcloud's clock together with the dashboard's."""

from __future__ import annotations

import datetime as dt
import time

from localcloud.store import Store


class Clock:
    """Now, shifted by the stored offset (seconds)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def offset(self) -> float:
        return float(self.store.meta("clock_offset", 0.0))

    def set_offset(self, seconds: float) -> None:
        self.store.set_meta("clock_offset", float(seconds))

    def timestamp(self) -> float:
        return time.time() + self.offset

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp(), tz=dt.UTC)

    def iso(self) -> str:
        """The timestamp format of Scaleway's APIs."""
        return self.now().isoformat().replace("+00:00", "Z")
