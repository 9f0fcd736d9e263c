"""Check events from worker threads to the one thread that writes CheckResult rows.

Checks run in threads and only talk to the cloud and to guests; every database write
(states, times, log lines, kept resources) happens on the runner's own thread, which drains
this queue between its heartbeats. Worker threads never open a database connection, so
SQLite sees one writer per run and no connection is left behind by a thread.
"""

from __future__ import annotations

import datetime as dt
import queue
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone


@dataclass
class Event:
    """One thing that happened to one check."""

    check: str
    kind: str  # "log" | "start" | "finish"
    text: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    at: dt.datetime = field(default_factory=timezone.now)


class Reporter:
    """A thread-safe queue of events; `drain()` is called by the writing thread."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def log(self, check: str, text: str) -> None:
        stamp = timezone.localtime().strftime("%H:%M:%S")
        for line in text.rstrip("\n").splitlines() or [""]:
            self._events.put(Event(check, "log", f"{stamp} {line}"))

    def start(self, check: str) -> None:
        self._events.put(Event(check, "start"))

    def finish(
        self,
        check: str,
        state: str,
        *,
        reason: str = "",
        not_applicable: list[str] | None = None,
        started: dt.datetime | None = None,
    ) -> None:
        now = timezone.now()
        fields: dict[str, Any] = {
            "state": state,
            "reason": reason,
            "not_applicable": list(not_applicable or []),
            "finished_at": now,
        }
        if started is not None:
            fields["duration"] = round((now - started).total_seconds(), 1)
        self._events.put(Event(check, "finish", fields=fields, at=now))

    def drain(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events
