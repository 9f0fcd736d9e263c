"""What a stage runs with: its StageContext (build, stage row, log, progress, cancel), how a
stage fails (StageFailed; a cancelled one raises cloud.cancel's Cancelled, as the engines do,
when the build was cancelled or this worker lost its claim on it), and the heartbeat that keeps
the build's lease while a stage runs.

Nothing here imports a stage or the pipeline: the stages and the pipeline import this module,
never one another.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection

from builds.models import Build, Stage, StageLogLine
from builds.recipe_secrets import masker_for

log = logging.getLogger(__name__)


class StageFailed(Exception):
    """A stage failed; the message is shown at the top of the build page."""


@dataclass
class StageContext:
    """What a stage function gets: its build and stage rows, and ways to report."""

    build: Build
    stage: Stage
    worker: str
    secrets: dict[str, str] = field(default_factory=dict)
    _last_progress: float = 0.0
    _last_cancel_check: float = 0.0
    _cancelled: bool = False
    lost_claim: threading.Event = field(default_factory=threading.Event)

    def mask(self, text: str) -> str:
        # The secrets' forms are computed once per set of values, not once per line.
        return masker_for(self.secrets.values())(text)

    def log(self, line: str) -> None:
        text = self.mask(str(line).rstrip("\n"))
        StageLogLine.objects.create(stage=self.stage, text=text[:10000])
        log.info("build %s %s: %s", self.build.pk, self.stage.name, text[:300])

    def progress(self, done: int, total: int | None, unit: str = "bytes") -> None:
        # Writes are throttled: a download reports every MiB, the page polls every second.
        now = time.monotonic()
        if now - self._last_progress < 0.5 and (total is None or done < total):
            return
        self._last_progress = now
        Stage.objects.filter(pk=self.stage.pk).update(
            progress_done=done, progress_total=total, progress_unit=unit
        )

    def cancelled(self) -> bool:
        if self._cancelled or self.lost_claim.is_set():
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= 1.0:
            self._last_cancel_check = now
            self._cancelled = self.build.cancel_is_requested()
        return self._cancelled

    def outputs_of(self, name: str) -> dict:
        return Stage.objects.get(build=self.build, name=name).outputs


class Heartbeat(threading.Thread):
    """Refreshes the build's lease while a stage runs; notices when the claim is lost."""

    def __init__(self, build: Build, worker: str, lost: threading.Event) -> None:
        super().__init__(name=f"heartbeat-{build.pk}", daemon=True)
        self.build, self.worker, self.lost = build, worker, lost
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.BUILD_HEARTBEAT_SECONDS):
                try:
                    alive = self.build.heartbeat(self.worker)
                except DatabaseError as exc:
                    # One missed beat is harmless: the lease is several beats long.
                    log.warning("build %s: heartbeat not recorded: %s", self.build.pk, exc)
                    continue
                if not alive:
                    self.lost.set()
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
