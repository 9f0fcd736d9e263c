"""Running a test run: the checks of one image version in one zone on one storage type, on
booted servers.

`run_test_run(test_run_id, worker)` claims the run (a lease: `claimed_by` plus a heartbeat
that another worker may take over once it goes stale), makes one pending CheckResult per
check, and runs the checks on the version's local image of the run's storage type in the
run's zone, on servers of a type that uses that storage (`commercial_type_for`):

- the checks that leave their server usable (`SHARED`) run one after the other on a single
  long-lived server, in the registry's order (boots are the expensive part); if that server
  cannot boot, each of them fails with that reason and the other checks still run;
- Cold snapshot, Hot snapshot and Backup copy one source server, booted once for the three
  (see `source`);
- every other check runs on servers of its own;
- the chain and the other checks share `TEST_CHECK_CONCURRENCY` worker threads.

Worker threads only talk to the cloud and the guests; this thread writes every row (the
ledger's TestRunResource rows too, before the check that created the resource goes on),
sends the heartbeat, and polls the cancel flag between steps. Whatever happens, everything
the run created is deleted at the end (see `ledger`), except what failed checks own when the
run keeps resources on failure. It never raises: the outcome is on the rows, and the run's
final state is returned.

A worker that takes a run over (its worker stopped sending heartbeats) first deletes what the
dead worker left: the resources its ledger rows list and whatever carries the run's tag,
each deletion in the owning check's log. Then only the checks that had not ended run again.
A run cancelled while its worker was dead is taken over the same way, cleaned, and ends
cancelled. Who takes it over: the build's test stage for a run of a build (it adopts the
runs it finds active), else the task that `builds.tasks.requeue_stale_test_runs` sends again.

Settings (read with their defaults when the project does not set them):
TEST_CHECK_CONCURRENCY (3), TEST_COMMERCIAL_TYPE_LOCAL ("DEV1-S", for local-storage images),
TEST_COMMERCIAL_TYPE_BLOCK ("PLAY2-PICO", for Block Storage images),
TEST_BOOT_TIMEOUT_SECONDS (600), TEST_SSH_TIMEOUT_SECONDS (30, per command),
TEST_ACTION_TIMEOUT_SECONDS (300), TEST_SSH_USER ("root"), TEST_LEASE_SECONDS (60: a
heartbeat older than this may be taken over; see `builds.leases`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from builds.choices import CHECK_DONE_STATES, CheckState, TestRunState
from builds.models import CheckResult, TestRun, TestRunResource
from builds.testing import registry
from builds.testing.harness import SETTLED, SHARED, SOURCE, CheckContext, Harness, RunSpec
from builds.testing.ledger import Apis, Entry, Journal, Ledger, tagged
from builds.testing.outcomes import CheckFailed
from builds.testing.reporting import Event, Reporter
from builds.testing.source import Source
from catalog.choices import LocalImageState, StorageType
from catalog.models import LocalImage
from cloud import tags, waiters
from cloud.cancel import Cancelled
from cloud.retries import CloudError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0  # six per lease (TEST_LEASE_SECONDS)
CANCEL_POLL_SECONDS = 2.0
DRAIN_SECONDS = 0.5
FAILED_STATES = (CheckState.FAILED, CheckState.ERROR)
NOT_STARTED = "the test run was cancelled before this check started"
CANCELLED_REASON = "the test run was cancelled"
LOCK_ATTEMPTS = 8
T = TypeVar("T")


def _db(statement: Callable[[], T]) -> T:
    """Run one idempotent database statement, again when SQLite reports a lock.

    Several runs write from threads of one process (one per zone): SQLite's busy timeout
    covers most contention, but not all of it (shared-cache connections report a lock at
    once), and a check's result must not be lost to a lock held for a few milliseconds.
    """
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            return statement()
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == LOCK_ATTEMPTS:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


# --- the entry point ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one call made of a run: its state afterwards, and whether this call ended it
    (False when another worker holds it, or had ended it)."""

    state: str
    ended_here: bool


class _NotHeld(Exception):
    """The run is not this worker's (any more): another worker holds it, or it ended."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def run_test_run(test_run_id: int, worker: str) -> str:
    """Run (or take over) a test run; return its state. Never raises."""
    return attempt_test_run(test_run_id, worker).state


def attempt_test_run(test_run_id: int, worker: str) -> Attempt:
    """Run (or take over) a test run unless a live worker holds it. Never raises."""
    try:
        return Attempt(_run(test_run_id, worker), ended_here=True)
    except _NotHeld as exc:
        return Attempt(exc.state, ended_here=False)
    except Exception as exc:
        log.exception("test run %s stopped unexpectedly", test_run_id)
        try:
            run = _db(TestRun.objects.filter(pk=test_run_id).first)
            if run is not None and run.is_active:
                _fail(run, f"the test run stopped unexpectedly: {exc}")
                return Attempt(TestRunState.ERROR, ended_here=True)
        except Exception:
            log.exception("test run %s: could not record the failure", test_run_id)
        return Attempt(TestRunState.ERROR, ended_here=False)


def _run(test_run_id: int, worker: str) -> str:
    """Run the checks; return the state this worker ended the run in (raises _NotHeld when
    the run is not, or stopped being, this worker's)."""
    run = _db(TestRun.objects.select_related("zone", "version__image").filter(pk=test_run_id).first)
    if run is None:
        raise _NotHeld("gone")
    names = list(run.checks or []) or registry.names()
    if run.state == TestRunState.QUEUED and run.cancel_requested:
        return _cancel_unstarted(run, names)
    resumed, previous = run.state == TestRunState.RUNNING, run.claimed_by
    if not _db(lambda: run.claim(worker)):
        _db(run.refresh_from_db)
        if run.state == TestRunState.QUEUED and run.cancel_requested:
            return _cancel_unstarted(run, names)
        raise _NotHeld(run.state)
    _prepare_results(run, names, resumed=resumed)
    journal = ledger_journal(run.pk)
    earlier_failed = _checks_in(run, FAILED_STATES)
    left = Leftovers()
    if resumed or _db(TestRunResource.objects.filter(test_run=run).exists):
        try:
            cleared = _clear_leftovers(
                run, worker, names, journal, earlier_failed, previous=previous, sweep=resumed
            )
        except CloudError as exc:
            return _fail(run, f"could not delete what an earlier worker left: {exc}")
        if cleared is None:
            log.warning("test run %s: the claim was lost; another worker has it", run.pk)
            _db(run.refresh_from_db)
            raise _NotHeld(run.state)
        left = cleared
    if _db(run.cancel_is_requested):
        # Taken over after a cancel (its worker had died): cleaned up, nothing runs again.
        _close_open_results(run, CheckState.CANCELLED, CANCELLED_REASON if resumed else NOT_STARTED)
        return _end(run, TestRunState.CANCELLED, **_outcome_fields(run, left.kept, left.errors))
    unknown = [n for n in names if n not in registry.CHECKS]
    for name in unknown:
        _db(functools.partial(_mark_unregistered, run, name))
    done = _checks_in(run, CHECK_DONE_STATES)
    # A check that ended under an earlier worker keeps its result.
    names = [n for n in names if n in registry.CHECKS and n not in done]
    local = _db(
        LocalImage.objects.filter(
            version_id=run.version_id, zone_id=run.zone_id, storage_type=run.storage_type
        )
        .exclude(provider_image_id="")
        .order_by("-id")
        .first
    )
    storage = storage_words(run.storage_type)
    if local is None:
        return _fail(
            run, f"version {run.version} has no published image on {storage} in {run.zone.code}"
        )
    if local.state != LocalImageState.AVAILABLE:
        return _fail(
            run,
            f"the image of version {run.version} on {storage} in {run.zone.code} is {local.state}",
        )
    if not names:
        return _end(run, TestRunState.FINISHED, **_outcome_fields(run, left.kept, left.errors))
    spec = RunSpec(
        test_run_id=run.pk,
        zone=run.zone.code,
        image_id=local.provider_image_id,
        tags=tuple(tags.tags_for_run(run.pk, run.build_id)),
        keep_on_failure=run.keep_resources_on_failure,
        commercial_type=commercial_type_for(run.storage_type),
        boot_timeout=float(settings.TEST_BOOT_TIMEOUT_SECONDS),
        ssh_timeout=float(settings.TEST_SSH_TIMEOUT_SECONDS),
        action_timeout=float(settings.TEST_ACTION_TIMEOUT_SECONDS),
        ssh_user=settings.TEST_SSH_USER,
        storage_type=str(run.storage_type),
    )
    reporter = Reporter()
    stop = threading.Event()
    try:
        harness = Harness(spec, reporter, stop, journal)
        harness.open()
    except CloudError as exc:
        return _fail(run, f"the cloud cannot be used: {exc}")
    except Exception as exc:
        return _fail(run, f"the test run could not start: {type(exc).__name__}: {exc}")
    # Kept on failure, or not deleted yet: the end of the run decides again.
    harness.ledger.restore(left.remaining)
    return _execute_run(run, worker, harness, names, earlier_failed)


def commercial_type_for(storage_type: str) -> str:
    """The server type a run boots for a storage type: one with local storage for local
    images, one that boots from Block Storage (no local storage) for Block images."""
    if storage_type == StorageType.SBS:
        return str(settings.TEST_COMMERCIAL_TYPE_BLOCK)
    return str(settings.TEST_COMMERCIAL_TYPE_LOCAL)


def storage_words(storage_type: str) -> str:
    """ "local storage" / "Block Storage", as messages name a storage type."""
    if storage_type == StorageType.SBS:
        return "Block Storage"
    return "local storage"


def _mark_unregistered(run: TestRun, name: str) -> int:
    return CheckResult.objects.filter(test_run=run, check_name=name).update(
        state=CheckState.ERROR,
        reason=f"no check is registered under the name {name!r}",
        finished_at=timezone.now(),
    )


# --- claiming and rows -------------------------------------------------------------------------


def _prepare_results(run: TestRun, names: list[str], *, resumed: bool) -> None:
    """One result per check; on a takeover, the checks that had not ended start again."""
    for name in names:
        result, created = _db(
            functools.partial(CheckResult.objects.get_or_create, test_run=run, check_name=name)
        )
        if resumed and not created and result.state not in CHECK_DONE_STATES:
            _db(
                functools.partial(
                    CheckResult.objects.filter(pk=result.pk).update,
                    state=CheckState.PENDING,
                    started_at=None,
                    finished_at=None,
                    duration=None,
                )
            )
            _db(functools.partial(result.append_log, "(taken over by another worker)"))


def ledger_journal(test_run_id: int) -> Journal:
    """The journal that writes a run's ledger to its TestRunResource rows; made on (and
    writing from) the thread that owns the run's rows."""
    return Journal(functools.partial(_write_resource, test_run_id))


def _write_resource(test_run_id: int, op: str, entry: Entry) -> None:
    """The ledger on disk (the journal's writer): a row per resource not deleted yet."""
    rows = TestRunResource.objects.filter(
        test_run_id=test_run_id, kind=entry.kind, resource_id=entry.id
    )
    if op == "forget":
        _db(rows.delete)
        return
    _db(
        lambda: TestRunResource.objects.get_or_create(
            test_run_id=test_run_id,
            kind=entry.kind,
            resource_id=entry.id,
            defaults={
                "zone": entry.zone,
                "region": entry.region,
                "name": entry.name[:200],
                "owner": entry.owner,
            },
        )
    )


def _outcome_fields(run: TestRun, kept: list[Entry], errors: list[str]) -> dict[str, Any]:
    """The run's kept resources and, when something could not be deleted, its error."""
    fields: dict[str, Any] = {"kept_resources": [_kept(entry) for entry in kept]}
    if errors:
        fields["error"] = "could not delete: " + "; ".join(errors)
        log.warning("test run %s: %s", run.pk, fields["error"])
    return fields


def _checks_in(run: TestRun, states: Collection[str]) -> set[str]:
    """The names of the run's checks whose result is in one of `states`."""
    rows = CheckResult.objects.filter(test_run=run, state__in=list(states))
    return set(_db(lambda: list(rows.values_list("check_name", flat=True))))


def _close_open_results(run: TestRun, state: str, reason: str) -> None:
    rows = CheckResult.objects.filter(test_run=run).exclude(state__in=CHECK_DONE_STATES)
    _db(lambda: rows.update(state=state, reason=reason, finished_at=timezone.now()))


def _cancel_unstarted(run: TestRun, names: list[str]) -> str:
    """End a queued run cancelled before it started (raises _NotHeld when another worker
    did it first, or claimed it meanwhile)."""
    for name in names:
        _db(functools.partial(CheckResult.objects.get_or_create, test_run=run, check_name=name))
    rows = TestRun.objects.filter(pk=run.pk, state=TestRunState.QUEUED)
    ended = _db(
        lambda: rows.update(state=TestRunState.CANCELLED, finished_at=timezone.now(), claimed_by="")
    )
    if not ended:
        _db(run.refresh_from_db)
        raise _NotHeld(run.state)
    _close_open_results(run, CheckState.CANCELLED, NOT_STARTED)
    return TestRunState.CANCELLED


def _fail(run: TestRun, error: str) -> str:
    """The run could not run its checks: each open check says why, the run ends in error."""
    _close_open_results(run, CheckState.ERROR, f"not run: {error}")
    rows = TestRun.objects.filter(pk=run.pk)
    _db(
        lambda: rows.update(
            state=TestRunState.ERROR, error=error, finished_at=timezone.now(), claimed_by=""
        )
    )
    return TestRunState.ERROR


def _end(run: TestRun, state: str, **fields: Any) -> str:
    rows = TestRun.objects.filter(pk=run.pk)
    _db(lambda: rows.update(state=state, finished_at=timezone.now(), claimed_by="", **fields))
    return state


def _apply(run: TestRun, events: list[Event]) -> None:
    """Write what the checks reported: consecutive log lines of a check in one statement."""
    index = 0
    while index < len(events):
        event = events[index]
        rows = CheckResult.objects.filter(test_run=run, check_name=event.check)
        if event.kind == "log":
            result = CheckResult(pk=_db(rows.values_list("pk", flat=True).first))
            lines = [event.text]
            while (
                index + 1 < len(events)
                and events[index + 1].kind == "log"
                and events[index + 1].check == event.check
            ):
                index += 1
                lines.append(events[index].text)
            text = "\n".join(lines)
            if result.pk is not None:
                _db(functools.partial(result.append_log, text))
        elif event.kind == "start":
            _db(functools.partial(rows.update, state=CheckState.RUNNING, started_at=event.at))
        elif event.kind == "finish":
            _db(functools.partial(rows.update, **event.fields))
        index += 1


# --- running the checks ------------------------------------------------------------------------


def _execute_run(
    run: TestRun, worker: str, harness: Harness, names: list[str], earlier_failed: set[str]
) -> str:
    harness.groups = registry.groups(names)
    shared, copying = harness.groups[SHARED], harness.groups[SOURCE]
    if copying:
        harness.source = Source(harness, copying)
    # The first check that copies the source server makes every copy; the others would only
    # wait for theirs meanwhile, so they queue behind the checks that do not use it.
    own = [n for n in names if n not in shared and n not in copying[1:]] + copying[1:]
    outcomes: dict[str, str] = {}
    concurrency = max(1, settings.TEST_CHECK_CONCURRENCY)
    lost = threading.Event()
    cancelled = threading.Event()
    watch = Watch(harness.reporter, harness.stop, harness.ledger.journal)
    with ThreadPoolExecutor(concurrency, thread_name_prefix=f"test-run-{run.pk}") as pool:
        futures: list[Future] = []
        if shared:
            futures.append(pool.submit(_run_chain, harness, shared, outcomes))
        futures.extend(pool.submit(_run_alone, harness, name, outcomes) for name in own)
        _supervise(run, worker, watch, lambda: all(f.done() for f in futures), lost, cancelled)
        for future in futures:
            if future.exception() is not None:  # a bug in the chain or runner, not a check
                log.error("test run %s: %s", run.pk, future.exception())
        failed = {name for name, state in outcomes.items() if state in FAILED_STATES}
        cleanup = pool.submit(harness.close, failed | earlier_failed)
        _supervise(run, worker, watch, cleanup.done, lost, cancelled, poll_cancel=False)
    try:
        kept, errors = cleanup.result()
    except Exception as exc:
        kept, errors = [], [f"clean-up stopped: {exc}"]
    _apply(run, harness.reporter.drain())
    if lost.is_set():
        log.warning("test run %s: the claim was lost; another worker has it", run.pk)
        _db(run.refresh_from_db)
        raise _NotHeld(run.state)
    _close_open_results(run, CheckState.ERROR, "the check did not report an outcome")
    state = TestRunState.FINISHED
    if cancelled.is_set() and any(s == CheckState.CANCELLED for s in outcomes.values()):
        state = TestRunState.CANCELLED
    return _end(run, state, **_outcome_fields(run, kept, errors))


def _kept(entry: Entry) -> dict[str, str]:
    record = entry.as_record()
    record["check"] = record.pop("owner")
    return record


@dataclass
class Watch:
    """What `_supervise` relays between worker threads and the rows."""

    reporter: Reporter
    stop: threading.Event
    journal: Journal | None


def _supervise(
    run: TestRun,
    worker: str,
    watch: Watch,
    done: Callable[[], bool],
    lost: threading.Event,
    cancelled: threading.Event,
    *,
    poll_cancel: bool = True,
) -> None:
    """Until `done()`: write ledger changes and reported events, send the heartbeat, relay a
    cancel request."""
    journal = watch.journal
    last_beat = last_poll = time.monotonic()
    while not done():
        if journal is not None:
            journal.flush()
        _apply(run, watch.reporter.drain())
        now = time.monotonic()
        if poll_cancel and now - last_poll >= CANCEL_POLL_SECONDS:
            last_poll = now
            if _db(run.cancel_is_requested):
                cancelled.set()
                watch.stop.set()
        if now - last_beat >= HEARTBEAT_SECONDS and not lost.is_set():
            last_beat = now
            if not _db(lambda: run.heartbeat(worker)):
                lost.set()
                watch.stop.set()
        if journal is not None:
            journal.wait(DRAIN_SECONDS)  # woken early by a ledger write waiting
        else:
            time.sleep(DRAIN_SECONDS)
    if journal is not None:
        journal.flush()
    _apply(run, watch.reporter.drain())


# --- taking over: what the dead worker left ----------------------------------------------------


@dataclass
class Leftovers:
    """What is still there after the clean-up of a takeover."""

    remaining: list[Entry] = field(default_factory=list)  # kept, or not deleted yet
    kept: list[Entry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _clear_leftovers(
    run: TestRun,
    worker: str,
    names: list[str],
    journal: Journal,
    earlier_failed: set[str],
    *,
    previous: str,
    sweep: bool,
) -> Leftovers | None:
    """Delete what an earlier worker of this run left in the cloud, before anything runs
    again: the resources its ledger rows list and, when it had started (`sweep`), whatever
    carries the run's tag (created but not written down yet when it died). Resources of a
    check that already failed stay when the run keeps resources on failure.

    Each line goes to the owning check's log (a resource of no known check: to every check
    that starts again). Runs in a thread while this one sends the heartbeat; returns None
    when the claim was lost meanwhile. A listing that fails raises CloudError.
    """
    rows = _db(lambda: list(TestRunResource.objects.filter(test_run=run)))
    ledger = Ledger(journal)
    ledger.restore(
        [
            Entry(
                kind=r.kind,
                id=r.resource_id,
                owner=r.owner,
                zone=r.zone,
                name=r.name,
                region=r.region,
            )
            for r in rows
        ]
    )
    zone = run.zone.code
    region = zone.rsplit("-", 1)[0]
    done = _checks_in(run, CHECK_DONE_STATES)
    audience = [n for n in names if n not in done] or names  # the checks that start again
    groups = registry.groups(names)
    who = f"worker {previous}" if previous else "an earlier worker"
    reporter = Reporter()

    def log_to(owner: str, text: str) -> None:
        targets = audience
        if groups.get(owner):
            targets = groups[owner]
        elif owner in names:
            targets = [owner]
        for name in targets:
            reporter.log(name, text)

    def keep(entry: Entry) -> bool:
        return run.keep_resources_on_failure and entry.owner in earlier_failed

    def work() -> tuple[list[Entry], list[str]]:
        apis = Apis.from_env()
        if sweep:
            known = {(e.kind, e.id) for e in ledger.entries()}
            tag = tags.run_tag(run.pk)
            for entry in tagged(apis, zone=zone, region=region, tag=tag):
                if (entry.kind, entry.id) not in known:
                    ledger.add(entry)
        count = len(ledger.entries())
        for name in audience:
            reporter.log(
                name,
                f"taken over from {who}: deleting the {count} resource(s) it left "
                "before the checks start again"
                if count
                else f"taken over from {who}: it left no resource behind",
            )
        return ledger.clean(
            apis,
            keep=keep,
            log=lambda entry, text: log_to(entry.owner, f"{text} (left by {who})"),
            timeout=float(settings.TEST_ACTION_TIMEOUT_SECONDS),
        )

    lost = threading.Event()
    watch = Watch(reporter, threading.Event(), journal)
    with ThreadPoolExecutor(1, thread_name_prefix=f"test-run-{run.pk}-takeover") as pool:
        future = pool.submit(work)
        _supervise(run, worker, watch, future.done, lost, threading.Event(), poll_cancel=False)
    kept, errors = future.result()  # a listing that failed raises here
    if lost.is_set():
        return None
    return Leftovers(remaining=ledger.entries(), kept=kept, errors=errors)


def _execute(harness: Harness, ctx: CheckContext, prepare: Callable[[], None] | None) -> str:
    """Run one check and report its outcome; return its state."""
    reporter, name = harness.reporter, ctx.name
    if harness.cancelled():
        reporter.finish(name, CheckState.CANCELLED, reason=NOT_STARTED)
        return CheckState.CANCELLED
    module = registry.get(name)
    reporter.start(name)
    started = timezone.now()
    storage = storage_words(harness.spec.storage_type)
    reporter.log(
        name, f"{module.LABEL} in {harness.spec.zone} on {storage} ({harness.spec.commercial_type})"
    )
    state, reason = CheckState.PASSED, ""
    try:
        if prepare is not None:
            prepare()
        module.run(ctx)
    except CheckFailed as exc:
        state, reason = CheckState.FAILED, str(exc)
    except Cancelled:
        state, reason = CheckState.CANCELLED, "the test run was cancelled"
    except Exception as exc:
        state, reason = CheckState.ERROR, str(exc) or type(exc).__name__
        reporter.log(name, "".join(traceback.format_exception(exc)).rstrip())
    else:
        # Assertions this cloud cannot provide are listed with the result (and shown on the
        # cell), never counted: the check passed what it could prove. A check that could
        # prove nothing at all is not applicable as a whole.
        if ctx.not_applicable_items and not ctx.proved_anything:
            state = CheckState.NOT_APPLICABLE
    reporter.log(name, f"{state}" + (f": {reason}" if reason else ""))
    reporter.finish(
        name, state, reason=reason, not_applicable=ctx.not_applicable_items, started=started
    )
    return state


def _run_alone(harness: Harness, name: str, outcomes: dict[str, str]) -> None:
    outcomes[name] = _execute(harness, harness.context(name), None)


def _ensure_up(ctx: CheckContext, server_id: str) -> None:
    """The shared server as the next check needs it: running and answering over SSH."""
    server = ctx.get_server(server_id)
    state = str(server.state)
    if state not in SETTLED:
        server = ctx.wait(waiters.wait_for_server, ctx.instance, ctx.zone, server_id, until=SETTLED)
        state = str(server.state)
    if state != "running":
        ctx.log(f"the shared server is {state}: powering it on")
        ctx.power_on(server_id)
    else:
        ctx.wait_ssh(server_id)


def _run_chain(harness: Harness, names: list[str], outcomes: dict[str, str]) -> None:
    """The shared checks, in order, on the zone's one long-lived server."""
    broken = ""

    for name in names:
        ctx = harness.context(name)

        def prepare(ctx: CheckContext = ctx) -> None:
            nonlocal broken
            if broken:
                raise CheckFailed(broken)
            first = harness.shared_server is None
            try:
                if first:
                    server_id = ctx.create_server("shared", start=False, owner=SHARED)
                    harness.shared_server = server_id
                    ctx.power_on(server_id)
                else:
                    assert harness.shared_server is not None
                    _ensure_up(ctx, harness.shared_server)
            except (CheckFailed, CloudError) as exc:
                if first:
                    broken = f"the shared server could not boot: {exc}"
                else:
                    broken = f"the shared server does not answer any more: {exc}"
                raise CheckFailed(broken) from exc
            ctx.server = harness.shared_server

        outcomes[name] = _execute(harness, ctx, prepare)
