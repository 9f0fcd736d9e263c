"""Test runs of a version above the single run: deciding what to run (the build's test stage,
Re-run, a zone enabled), queueing the runs, running them in parallel, and reading what they
recorded into the zones x storage types x checks matrix and the verdict that release
readiness relies on.

`runner` runs one test run: one zone, one storage type (its harness boots the servers and
the checks act on them); this module orchestrates several and judges the result. A version
is tested on each storage type it is published with (local storage, Block Storage), in every
enabled zone: one run per (zone, storage type). The matrix cell of a (zone, storage type,
check) is the latest result of that check there, whichever run produced it, so re-running
one failed cell turns the whole matrix green without running the rest again. The storage
types of the matrix are those the version is published with, or was tested on, in its zones;
with none, the image's own.
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
from builds.testing.runner import attempt_test_run, storage_words
from catalog.choices import LocalImageState, StorageType, VersionState
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


STORAGE_ORDER: tuple[str, ...] = tuple(StorageType.values)  # local storage first


def storage_label(storage_type: str) -> str:
    """ "Local storage" / "Block Storage"."""
    try:
        return str(StorageType(storage_type).label)
    except ValueError:
        return storage_type


def ordered_storage(types: Iterable[str]) -> list[str]:
    known = set(types)
    return [t for t in STORAGE_ORDER if t in known] + sorted(known - set(STORAGE_ORDER))


def published_storage(version: ImageVersion) -> dict[str, list[str]]:
    """zone code -> the storage types the version has an available local image of there."""
    found: dict[str, set[str]] = {}
    rows = LocalImage.objects.filter(version=version, state=LocalImageState.AVAILABLE).exclude(
        provider_image_id=""
    )
    for code, storage in rows.values_list("zone__code", "storage_type"):
        found.setdefault(code, set()).add(storage)
    return {code: ordered_storage(types) for code, types in found.items()}


# --- starting runs ----------------------------------------------------------------------------


def create_runs(
    version: ImageVersion,
    zones: Iterable[Zone],
    *,
    storage_types: Iterable[str] | None = None,
    names: list[str] | None = None,
    build: Build | None = None,
    reason: str = "",
    user: User | AnonymousUser | None = None,
    keep_resources_on_failure: bool = False,
) -> list[TestRun]:
    """One queued TestRun per (zone, storage type) with a pending result per check (so the
    matrix shows the cells queued at once). `storage_types` None means each storage type the
    version has an available local image of in that zone (local storage where it has none:
    that run says the image is missing). `names` None means every registered check."""
    zones = list(zones)
    if storage_types is None:
        published = published_storage(version)
        targets = [(z, t) for z in zones for t in published.get(z.code) or [StorageType.LOCAL]]
    else:
        types = ordered_storage(storage_types)
        targets = [(z, t) for z in zones for t in types]
    return create_runs_for(
        version,
        targets,
        names=names,
        build=build,
        reason=reason,
        user=user,
        keep_resources_on_failure=keep_resources_on_failure,
    )


def create_runs_for(
    version: ImageVersion,
    targets: Iterable[tuple[Zone, str]],
    *,
    names: list[str] | None = None,
    build: Build | None = None,
    reason: str = "",
    user: User | AnonymousUser | None = None,
    keep_resources_on_failure: bool = False,
) -> list[TestRun]:
    """One queued TestRun per (zone, storage type) of `targets` (see `create_runs`)."""
    wanted = list(names) if names else check_names()
    runs = []
    with transaction.atomic():
        for zone, storage_type in targets:
            run = TestRun.objects.create(
                version=version,
                zone=zone,
                storage_type=storage_type,
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
    """Run several test runs (one per zone and storage type) in threads at once; return their
    states.

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
    storage_type: str | None = None,
    check: str | None = None,
    failed_only: bool = False,
    user: User | AnonymousUser | None = None,
    keep_resources_on_failure: bool = False,
) -> list[TestRun]:
    """Re-run one cell (zone + storage type + check), one row (zone + storage type), one
    zone (each storage type published there), or every failed cell (failed_only).

    Returns the runs queued (none when there is nothing to re-run, or for a version adopted
    from the Marketplace: not built here, it is never tested)."""
    if version.is_adopted:
        return []
    zones = [zone] if zone else enabled_zones()
    grid = matrix(version)
    published = published_storage(version)
    runs: list[TestRun] = []
    plan: list[tuple[Zone, str, list[str]]] = []
    for z in zones:
        if storage_type:
            types = [storage_type]
        elif failed_only:
            types = grid.storage_types
        else:
            types = published.get(z.code) or [StorageType.LOCAL]
        for st in types:
            if check:
                names = [check]
            elif failed_only:
                bad = (CheckState.FAILED, CheckState.ERROR, CheckState.CANCELLED)
                names = [c.name for c in grid.checks if grid.cell(z.code, st, c.name).state in bad]
            else:
                names = [c.name for c in grid.checks]
            if names:
                plan.append((z, st, names))
    if failed_only:
        reason = "Re-run of the failed checks"
    elif check:
        reason = f"Re-run of {check}"
    elif storage_type:
        reason = f"Re-run of the zone on {storage_words(storage_type)}"
    else:
        reason = "Re-run of the zone"
    for z, st, names in plan:
        runs += create_runs_for(
            version,
            [(z, st)],
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
    storage_type: str = StorageType.LOCAL
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

    @property
    def storage_words(self) -> str:
        return storage_words(self.storage_type)


@dataclass
class Row:
    """One (zone, storage type) of the matrix: its cells, in the checks' order."""

    zone: Zone
    storage_type: str
    cells: list[Cell]
    published: bool  # an available local image of this storage type in this zone

    @property
    def storage_label(self) -> str:
        return storage_label(self.storage_type)

    @property
    def storage_words(self) -> str:
        return storage_words(self.storage_type)

    @property
    def untested(self) -> bool:
        """No check has a result here (never run, or only queued)."""
        return all(c.state in NOT_RUN_STATES for c in self.cells)


# A cell without a verdict: never run, or queued or running.
NOT_RUN_STATES = ("", CheckState.PENDING, CheckState.RUNNING)


@dataclass
class Matrix:
    zones: list[Zone]
    checks: list[CheckInfo]
    cells: dict[tuple[str, str, str], Cell]  # (zone, storage type, check)
    active: bool  # a run of this version is queued or running
    storage_types: list[str] = field(default_factory=lambda: [StorageType.LOCAL])
    published: set[tuple[str, str]] = field(default_factory=set)  # (zone, storage type)

    def cell(self, zone: str, storage_type: str, check: str) -> Cell:
        return self.cells.get((zone, storage_type, check)) or Cell(zone, check, storage_type)

    def rows(self) -> list[Row]:
        return [
            Row(
                zone=z,
                storage_type=st,
                cells=[self.cell(z.code, st, c.name) for c in self.checks],
                published=(z.code, st) in self.published,
            )
            for z in self.zones
            for st in self.storage_types
        ]

    @property
    def unpublished(self) -> list[str]:
        """The (zone, storage type) rows without an available local image, in words."""
        return [
            f"{row.zone.code} ({row.storage_words})" for row in self.rows() if not row.published
        ]

    @property
    def several_storage_types(self) -> bool:
        return len(self.storage_types) > 1

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows():
            for cell in row.cells:
                state = cell.state or "not_run"
                out[state] = out.get(state, 0) + 1
        return out

    @property
    def total(self) -> int:
        return len(self.zones) * len(self.storage_types) * len(self.checks)

    @property
    def passed(self) -> int:
        return self.counts().get(CheckState.PASSED, 0)

    @property
    def failed_cells(self) -> list[Cell]:
        bad = (CheckState.FAILED, CheckState.ERROR, CheckState.CANCELLED)
        return [c for row in self.rows() for c in row.cells if c.state in bad]

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total

    def green(self, zone: str, storage_type: str) -> bool:
        """Every check passed in `zone` on `storage_type`."""
        return all(self.cell(zone, storage_type, c.name).ok for c in self.checks)


def matrix(version: ImageVersion, zones: list[Zone] | None = None) -> Matrix:
    """The latest result per (enabled zone, storage type, check): three queries whatever the
    history (four when the version is neither published nor tested: the image's storage
    types are read then)."""
    zones = enabled_zones() if zones is None else zones
    infos = checks()
    latest_ids = (
        CheckResult.objects.filter(test_run__version=version)
        .values("test_run__zone__code", "test_run__storage_type", "check_name")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    codes = {z.code for z in zones}
    cells: dict[tuple[str, str, str], Cell] = {}
    for row in CheckResult.objects.filter(pk__in=list(latest_ids)).values(
        "id",
        "check_name",
        "state",
        "reason",
        "duration",
        "not_applicable",
        "test_run_id",
        "test_run__zone__code",
        "test_run__storage_type",
    ):
        key = (row["test_run__zone__code"], row["test_run__storage_type"], row["check_name"])
        cells[key] = Cell(
            zone=key[0],
            check=key[2],
            storage_type=key[1],
            state=row["state"],
            result_id=row["id"],
            reason=row["reason"],
            duration=row["duration"],
            not_applicable=row["not_applicable"] or [],
            run_id=row["test_run_id"],
        )
    active = TestRun.objects.filter(version=version, state__in=ACTIVE).exists()
    published = {
        (code, storage)
        for code, storage in LocalImage.objects.filter(
            version=version, state=LocalImageState.AVAILABLE
        )
        .exclude(provider_image_id="")
        .values_list("zone__code", "storage_type")
    }
    types = {st for code, st in published if code in codes}
    types |= {st for code, st, _ in cells if code in codes}
    if not types:
        types = set(version.image.storage_types or [StorageType.LOCAL])
    return Matrix(zones, infos, cells, active, ordered_storage(types), published)


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
    """Whether every check passed in every enabled zone on every storage type the version is
    published with, and if not, why in plain words.

    `grid` is the version's matrix when the caller already has it (not computed again)."""
    grid = matrix(version) if grid is None else grid
    if not grid.zones:
        return Verdict(False, "No zone is enabled.")
    storages = " and ".join(storage_words(t) for t in grid.storage_types)
    if grid.all_passed:
        return Verdict(
            True,
            f"Every check ({len(grid.checks)}) passed in every enabled zone ({len(grid.zones)}) "
            f"on {storages}.",
        )
    counts = grid.counts()
    bad = grid.failed_cells
    if bad:
        first = bad[0]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        why = f": {first.reason}" if first.reason else ""
        what = OUTCOME_WORDS.get(first.state, "failed")
        # The storage type is named when the version has several (one says nothing more).
        on = f" on {first.storage_words}" if grid.several_storage_types else ""
        return Verdict(
            False,
            f"{first.check} {what} in {first.zone}{on}{why}{more} ({grid.passed}/{grid.total}).",
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
            f"enabled zone(s) on {storages}.",
        )
    return Verdict(
        False,
        f"The version is not tested yet everywhere: {untested_words(grid)}; {grid.passed} of "
        f"{grid.total} checks passed.",
    )


def untested_words(grid: Matrix) -> str:
    """Where checks have not run, in words: "not tested on Block Storage in fr-par-2; 3
    checks not run on local storage in nl-ams-1"."""
    untested: dict[str, list[str]] = {}
    parts: list[str] = []
    for row in grid.rows():
        missing = [c for c in row.cells if c.state in NOT_RUN_STATES]
        if row.untested:
            untested.setdefault(row.storage_type, []).append(row.zone.code)
        elif missing:
            parts.append(
                f"{len(missing)} check(s) not run on {row.storage_words} in {row.zone.code}"
            )
    words = [
        f"not tested on {storage_words(st)} in {', '.join(codes)}"
        for st, codes in sorted(untested.items(), key=lambda item: STORAGE_ORDER.index(item[0]))
    ]
    return "; ".join(words + parts) or "some checks have not run yet"


def record_verdict(version: ImageVersion) -> str:
    """Move a version to tested / test failed from its matrix (not while runs are active):
    tested once every check passed on every storage type in every enabled zone."""
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
