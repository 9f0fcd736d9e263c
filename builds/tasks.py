"""django-q2 entry points of the builds app: load, claim, call, record."""

from __future__ import annotations

import logging

from django.conf import settings

from builds import pipeline
from builds.choices import RUNNING_STATES, StageName
from builds.leases import worker_name
from builds.models import Build, Stage, StageLogLine, TestRun
from builds.publish import PublishError, retry_zone
from builds.queue import enqueue as enqueue_build
from builds.testing.orchestration import enqueue as enqueue_test_runs
from builds.testing.orchestration import run_in_parallel
from catalog.models import Zone

log = logging.getLogger(__name__)


def run_build(build_id: int) -> str:
    """Run (or resume) a build. A redelivered task leaves a live claim alone."""
    build = Build.objects.filter(pk=build_id).select_related("image").first()
    if build is None:
        return "gone"
    if build.arch not in settings.WORKER_ARCHITECTURES:
        # This worker cannot run the guest's binaries; it should not be on this queue.
        log.error(
            "build %s is %s; this worker builds %s",
            build_id,
            build.arch,
            settings.WORKER_ARCHITECTURES,
        )
        return "wrong architecture"
    me = worker_name()
    if not build.claim(me):
        return f"not claimed ({build.state}, held by {build.claimed_by or 'nobody'})"
    return pipeline.run(build, me)


def requeue_stale_builds() -> int:
    """Send again the builds whose worker stopped sending heartbeats (it was killed).

    The new task's claim takes the build over and resumes it at its first unfinished stage.
    """
    count = 0
    for build in Build.objects.stale_claims():
        log.warning(
            "build %s: heartbeat stopped (worker %s); sending it again", build.pk, build.claimed_by
        )
        enqueue_build(build)
        count += 1
    return count


def requeue_stale_test_runs() -> int:
    """Send again the test runs whose worker stopped sending heartbeats (it was killed).

    The new task's claim takes each run over: it deletes what the dead worker created, then
    runs the checks that had not ended. The runs of a build still running are left to the
    build: its test stage, resumed by `requeue_stale_builds` when the same worker died, adopts
    them. A build cancelled meanwhile takes nothing over: its runs are cancelled here, and the
    task only deletes what they left. One task per version, its zones in parallel.
    """
    stale = TestRun.objects.stale_claims()
    stale.filter(build__cancel_requested=True).update(cancel_requested=True)
    stale = (
        stale.exclude(build__state__in=RUNNING_STATES, build__cancel_requested=False)
        .select_related("version")
        .order_by("id")
    )
    by_version: dict[int, list[TestRun]] = {}
    for run in stale:
        log.warning(
            "test run %s: heartbeat stopped (worker %s); sending it again", run.pk, run.claimed_by
        )
        by_version.setdefault(run.version_id, []).append(run)
    for runs in by_version.values():
        enqueue_test_runs(runs)
    return sum(len(runs) for runs in by_version.values())


def retry_publish_zone(
    build_id: int, zone_code: str, storage_types: list[str] | None = None
) -> str:
    """Publish a build's version in one zone again (the build page's per-zone Retry), with
    `storage_types` (default: every storage type of the image)."""
    build = Build.objects.select_related("version", "image").filter(pk=build_id).first()
    zone = Zone.objects.filter(code=zone_code).first()
    if build is None or build.version is None or zone is None:
        return "nothing to publish"
    stage = Stage.objects.get(build=build, name=StageName.PUBLISH)

    def log_line(text: str) -> None:
        StageLogLine.objects.create(stage=stage, text=f"[{zone_code}] {text}"[:10000])

    try:
        retry_zone(build.pk, build.version, zone, storage_types=storage_types, log=log_line)
    except PublishError as exc:
        log_line(f"FAILED: {exc}")
        return f"failed: {exc}"
    log_line("published")
    return "published"


def run_test_runs(run_ids: list[int]) -> str:
    """Run test runs (Re-run, a zone enabled): their zones in parallel, then the verdict."""
    states = run_in_parallel(list(run_ids), worker_name())
    return ", ".join(f"#{k}: {v}" for k, v in sorted(states.items())) or "nothing to run"
