"""The test stage: the build's version tested in every enabled zone where it is published, on
each storage type it is published with there (one run per zone and storage type, all in
parallel). A failing check does not fail the build: the verdict goes on the version.
Starting, following and judging the runs is builds.testing.orchestration's work."""

from __future__ import annotations

import threading
import time

from django.conf import settings

from builds.choices import StageName, TestRunState
from builds.models import CheckResult, TestRun
from builds.stages.context import StageContext, StageFailed
from builds.testing import orchestration
from cloud.cancel import Cancelled

NAME = StageName.TEST
NEEDS: tuple[str, ...] = (StageName.PUBLISH,)


def run(ctx: StageContext) -> dict:
    build = ctx.build
    version = build.version
    if version is None:
        raise StageFailed("The build produced no version to test.")
    if not settings.BUILD_TEST_STAGE:
        ctx.log("Test runs are switched off on this installation (BUILD_TEST_STAGE=0).")
        return {"skipped": "BUILD_TEST_STAGE=0"}
    # A takeover adopts the runs its build left active (a dead worker's, taken over below once
    # their heartbeat has stopped): never a second set for the same zone and storage type. A
    # (zone, storage type) whose latest run finished keeps it; one whose latest run ended
    # otherwise runs again.
    runs = list(build.test_runs.select_related("zone").order_by("-created_at", "-id"))
    adopted = [r for r in runs if r.state in orchestration.ACTIVE]
    latest: dict[tuple[str, str], TestRun] = {}
    for run in runs:
        latest.setdefault((run.zone.code, run.storage_type), run)
    covered = {(r.zone.code, r.storage_type) for r in adopted} | {
        key for key, run in latest.items() if run.state == TestRunState.FINISHED
    }
    published = orchestration.published_storage(version)
    targets = [
        (z, storage) for z in orchestration.enabled_zones() for storage in published.get(z.code, [])
    ]
    if not targets and not adopted:
        ctx.log("The version is available in no enabled zone: nothing to test.")
        return {"runs": [], "verdict": "nothing to test"}
    todo = [(z, storage) for z, storage in targets if (z.code, storage) not in covered]
    created = orchestration.create_runs_for(version, todo, build=build, reason=f"Build #{build.pk}")
    if adopted:
        ctx.log(
            "Adopting the test run(s) left active by an earlier worker: "
            + ", ".join(f"#{r.pk} ({_where(r.zone.code, r.storage_type)})" for r in adopted)
            + "; what that worker created is deleted before their unfinished checks run."
        )
    if todo or not adopted:
        where = ", ".join(_where(z.code, storage) for z, storage in todo) or "no zone"
        ctx.log(
            f"Testing {version} in {where} ({len(orchestration.check_names())} checks each, "
            "zones and storage types in parallel)."
        )
    ids = [r.pk for r in adopted + created]
    worker = threading.Thread(
        target=orchestration.run_in_parallel,
        args=(ids, ctx.worker),
        kwargs={"follow": lambda: not ctx.lost_claim.is_set()},
        name="test-runs",
    )
    worker.start()
    total = sum(len(r.checks or orchestration.check_names()) for r in adopted + created)
    while worker.is_alive():
        worker.join(timeout=2)
        if ctx.cancelled() and not ctx.lost_claim.is_set():
            # A cancel, not a takeover of this build: the runs go on for whoever took it.
            orchestration.cancel_active(build=build)
        finished = CheckResult.objects.filter(
            test_run__in=ids, state__in=orchestration.CHECK_FINISHED
        ).count()
        ctx.progress(finished, total, "checks")
        time.sleep(0.1)
    if ctx.cancelled():
        raise Cancelled("cancelled")
    orchestration.record_verdict(version)
    result = orchestration.verdict(version)
    ctx.log(f"Verdict: {result.reason}")
    return {
        "runs": [r.pk for r in build.test_runs.all()],
        "verdict": "passed" if result.passed else "not passed",
    }


def _where(zone: str, storage_type: str) -> str:
    return f"{zone} on {orchestration.storage_words(storage_type)}"


def outputs_exist(outputs: dict) -> bool:
    """What the test runs created is recorded on their rows; the verdict is on the version."""
    return bool(outputs)
