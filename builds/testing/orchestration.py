"""Test runs of a version above the single run: deciding what to run (the build's test stage,
Re-run, a zone enabled), queueing the runs, running a version's zones in parallel, and reading
what they recorded into the zones x checks matrix and the verdict that release readiness
relies on.

`runner` runs one test run in one zone (its harness boots the servers and the checks act on
them); this module orchestrates several and judges the result. The matrix cell of a
(zone, check) is the latest result of that check in that zone, whichever run produced it,
so re-running one failed cell turns the whole matrix green without running the rest again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import close_old_connections, transaction
from django.db.models import Max
from django_q.tasks import async_task

from builds.choices import CHECK_DONE_STATES, CheckState, TestRunState
from builds.models import Build, CheckResult, TestRun
from builds.signals import test_run_ended
from builds.testing import registry
from builds.testing.runner import attempt_test_run
from catalog.choices import LocalImageState, VersionState
from catalog.models import ImageVersion, LocalImage, Zone

log = logging.getLogger(__name__)

RUN_TASK = "builds.tasks.run_test_runs"
ACTIVE = (TestRunState.QUEUED, TestRunState.RUNNING)
# How often a run held by another worker is looked at again while it is followed.
FOLLOW_SECONDS = 5.0
CHECK_FINISHED = [str(s) for s in CHECK_DONE_STATES]
# The version states a test verdict may move (a released or retired version keeps its state).
VERDICT_STATES = (
    VersionState.BUILT,
    VersionState.PUBLISHED,
    VersionState.TESTED,
    VersionState.TEST_FAILED,
)


@dataclass(frozen=True)
class CheckInfo:
    name: str
    label: str


def checks() -> list[CheckInfo]:
    """Every registered check, in the registry's order."""
    return [CheckInfo(m.NAME, m.LABEL) for m in registry.modules()]


def check_names() -> list[str]:
    return [c.name for c in checks()]


def enabled_zones() -> list[Zone]:
    return list(Zone.objects.filter(enabled=True).order_by("code"))


# --- starting runs ----------------------------------------------------------------------------


def create_runs(
    version: ImageVersion,
    zones: Iterable[Zone],
    *,
    names: list[str] | None = None,
    build: Build | None = None,
    reason: str = "",
    user: User | AnonymousUser | None = None,
    keep_resources_on_failure: bool = False,
) -> list[TestRun]:
    """One queued TestRun per zone with a pending result per check (so the matrix shows the
    cells queued at once). `names` None means every registered check."""
    wanted = list(names) if names else check_names()
    runs = []
    with transaction.atomic():
        for zone in zones:
            run = TestRun.objects.create(
                version=version,
                zone=zone,
                build=build,
                checks=wanted,
                reason=reason[:200],
                requested_by=user if user is not None and user.is_authenticated else None,
                keep_resources_on_failure=keep_resources_on_failure,
            )
            CheckResult.objects.bulk_create(
                [CheckResult(test_run=run, check_name=name) for name in wanted]
            )
            runs.append(run)
    return runs


def enqueue(runs: list[TestRun]) -> None:
    """Send the runs to the `long` queue (one task runs the zones in parallel), on commit."""
    ids = [r.pk for r in runs]
    if not ids:
        return
    cluster = settings.BUILD_QUEUES.get(runs[0].version.arch, "long")

    def send() -> None:
        async_task(RUN_TASK, ids, cluster=cluster, task_name=f"tests-{ids[0]}", group="tests")

    transaction.on_commit(send)


def run_in_parallel(
    run_ids: list[int], worker: str, *, follow: Callable[[], bool] | None = None
) -> dict[int, str]:
    """Run several test runs (one per zone) in threads at once; return their states.

    A run that another live worker holds is left to it; with `follow`, it is waited for
    instead, while `follow()` is true, and taken over if that worker's heartbeat stops (the
    build's test stage follows the runs it adopted). Only the runs ended here are announced
    (`test_run_ended`): a run is announced once, by the worker that ended it."""
    states: dict[int, str] = {}
    ended: set[int] = set()

    def one(run_id: int) -> None:
        try:
            while True:
                attempt = attempt_test_run(run_id, worker)
                states[run_id] = attempt.state
                if attempt.ended_here:
                    ended.add(run_id)
                if attempt.state not in ACTIVE or follow is None or not follow():
                    return
                time.sleep(FOLLOW_SECONDS)
        except Exception as exc:  # the runner records its own errors; this is a last resort
            log.exception("test run %s crashed", run_id)
            if TestRun.objects.filter(pk=run_id, state__in=ACTIVE).update(
                state=TestRunState.ERROR, error=f"The test run crashed: {exc}"
            ):
                ended.add(run_id)
            states[run_id] = TestRunState.ERROR
        finally:
            close_old_connections()

    threads = [threading.Thread(target=one, args=(i,), name=f"test-run-{i}") for i in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = set(TestRun.objects.filter(pk__in=run_ids).values_list("version_id", flat=True))
    for version in ImageVersion.objects.filter(pk__in=versions):
        record_verdict(version)
    for run in TestRun.objects.filter(pk__in=ended).select_related("zone", "version__image"):
        try:
            test_run_ended.send(sender=TestRun, test_run=run)
        except Exception:  # a listener's failure never changes the run's outcome
            log.exception("test run %s: a listener of test_run_ended failed", run.pk)
    return states


def rerun(
    version: ImageVersion,
    *,
    zone: Zone | None = None,
    check: str | None = None,
    failed_only: bool = False,
    user: User | AnonymousUser | None = None,
    keep_resources_on_failure: bool = False,
) -> list[TestRun]:
    """Re-run one cell (zone + check), one zone (zone), or every failed cell (failed_only).

    Returns the runs queued (none when there is nothing to re-run)."""
    zones = [zone] if zone else enabled_zones()
    grid = matrix(version)
    runs: list[TestRun] = []
    plan: list[tuple[Zone, list[str]]] = []
    for z in zones:
        if check:
            names = [check]
        elif failed_only:
            names = [
                c.name
                for c in grid.checks
                if grid.cell(z.code, c.name).state in (CheckState.FAILED, CheckState.ERROR)
                or grid.cell(z.code, c.name).state == CheckState.CANCELLED
            ]
        else:
            names = [c.name for c in grid.checks]
        if names:
            plan.append((z, names))
    if failed_only:
        reason = "Re-run of the failed checks"
    elif check:
        reason = f"Re-run of {check}"
    else:
        reason = "Re-run of the zone"
    for z, names in plan:
        runs += create_runs(
            version,
            [z],
            names=names,
            reason=reason,
            user=user,
            keep_resources_on_failure=keep_resources_on_failure,
        )
    enqueue(runs)
    return runs


def cancel_active(version: ImageVersion | None = None, build: Build | None = None) -> int:
    """Ask the active runs of a version or a build to stop."""
    runs = TestRun.objects.filter(state__in=ACTIVE)
    if version is not None:
        runs = runs.filter(version=version)
    if build is not None:
        runs = runs.filter(build=build)
    return runs.update(cancel_requested=True)


# --- the matrix and the verdict ---------------------------------------------------------------


@dataclass
class Cell:
    zone: str
    check: str
    state: str = ""  # "" = never run
    result_id: int | None = None
    reason: str = ""
    duration: float | None = None
    not_applicable: list[str] = field(default_factory=list)
    run_id: int | None = None

    @property
    def label(self) -> str:
        if not self.state:
            return "not run"
        return CheckState(self.state).label

    @property
    def ok(self) -> bool:
        return self.state == CheckState.PASSED


@dataclass
class Matrix:
    zones: list[Zone]
    checks: list[CheckInfo]
    cells: dict[tuple[str, str], Cell]
    active: bool  # a run of this version is queued or running
    unpublished: list[str]  # enabled zones without an available local image

    def cell(self, zone: str, check: str) -> Cell:
        return self.cells.get((zone, check)) or Cell(zone, check)

    def rows(self) -> list[tuple[Zone, list[Cell]]]:
        return [(z, [self.cell(z.code, c.name) for c in self.checks]) for z in self.zones]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for zone in self.zones:
            for check in self.checks:
                state = self.cell(zone.code, check.name).state or "not_run"
                out[state] = out.get(state, 0) + 1
        return out

    @property
    def total(self) -> int:
        return len(self.zones) * len(self.checks)

    @property
    def passed(self) -> int:
        return self.counts().get(CheckState.PASSED, 0)

    @property
    def failed_cells(self) -> list[Cell]:
        bad = (CheckState.FAILED, CheckState.ERROR, CheckState.CANCELLED)
        return [c for _, row in self.rows() for c in row if c.state in bad]

    @property
    def all_passed(self) -> bool:
        return bool(self.zones) and self.passed == self.total


def matrix(version: ImageVersion, zones: list[Zone] | None = None) -> Matrix:
    """The latest result per (enabled zone, check): three queries whatever the history."""
    zones = enabled_zones() if zones is None else zones
    infos = checks()
    latest_ids = (
        CheckResult.objects.filter(test_run__version=version)
        .values("test_run__zone__code", "check_name")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    cells: dict[tuple[str, str], Cell] = {}
    for row in CheckResult.objects.filter(pk__in=list(latest_ids)).values(
        "id",
        "check_name",
        "state",
        "reason",
        "duration",
        "not_applicable",
        "test_run_id",
        "test_run__zone__code",
    ):
        key = (row["test_run__zone__code"], row["check_name"])
        cells[key] = Cell(
            zone=key[0],
            check=key[1],
            state=row["state"],
            result_id=row["id"],
            reason=row["reason"],
            duration=row["duration"],
            not_applicable=row["not_applicable"] or [],
            run_id=row["test_run_id"],
        )
    active = TestRun.objects.filter(version=version, state__in=ACTIVE).exists()
    available = set(
        LocalImage.objects.filter(version=version, state=LocalImageState.AVAILABLE).values_list(
            "zone__code", flat=True
        )
    )
    unpublished = [z.code for z in zones if z.code not in available]
    return Matrix(zones, infos, cells, active, unpublished)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


# How the verdict words a cell that did not pass.
OUTCOME_WORDS: dict[str, str] = {
    CheckState.FAILED: "failed",
    CheckState.ERROR: "could not run",
    CheckState.CANCELLED: "was cancelled",
}


def verdict(version: ImageVersion, grid: Matrix | None = None) -> Verdict:
    """Whether every check passed in every enabled zone, and if not, why in plain words.

    `grid` is the version's matrix when the caller already has it (not computed again)."""
    grid = matrix(version) if grid is None else grid
    if not grid.zones:
        return Verdict(False, "No zone is enabled.")
    if grid.all_passed:
        return Verdict(
            True,
            f"Every check ({len(grid.checks)}) passed in every enabled zone ({len(grid.zones)}).",
        )
    counts = grid.counts()
    bad = grid.failed_cells
    if bad:
        first = bad[0]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        why = f": {first.reason}" if first.reason else ""
        what = OUTCOME_WORDS.get(first.state, "failed")
        return Verdict(
            False, f"{first.check} {what} in {first.zone}{why}{more} ({grid.passed}/{grid.total})."
        )
    na = counts.get(CheckState.NOT_APPLICABLE, 0)
    pending = grid.total - grid.passed - na
    if grid.active:
        return Verdict(False, f"Tests are running: {grid.passed} of {grid.total} checks passed.")
    if na and not pending:
        return Verdict(
            False,
            f"{na} checks could not be applied on this cloud; they are not counted as passed.",
        )
    if not grid.cells:
        return Verdict(
            False,
            f"The version is not tested yet: no check has run in the {len(grid.zones)} "
            "enabled zone(s).",
        )
    return Verdict(
        False,
        f"The version is not tested yet everywhere: {grid.passed} of {grid.total} checks "
        "passed; the others have not run yet.",
    )


def record_verdict(version: ImageVersion) -> str:
    """Move a version to tested / test failed from its matrix (not while runs are active)."""
    grid = matrix(version)
    if grid.active or not grid.zones:
        return version.state
    if grid.all_passed:
        state = VersionState.TESTED
    elif grid.failed_cells:
        state = VersionState.TEST_FAILED
    else:
        return version.state
    ImageVersion.objects.filter(pk=version.pk, state__in=VERDICT_STATES).update(state=state)
    version.refresh_from_db(fields=["state"])
    return version.state
