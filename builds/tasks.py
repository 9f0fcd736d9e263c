"""django-q2 entry points of the builds app: load, claim, call, record."""

from __future__ import annotations

import logging
import os
import socket

from django.conf import settings

from builds import pipeline
from builds.choices import RUNNING_STATES
from builds.models import Build

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    from builds.queue import enqueue

    count = 0
    for build in Build.objects.stale_claims().filter(state__in=RUNNING_STATES):
        log.warning(
            "build %s: heartbeat stopped (worker %s); sending it again", build.pk, build.claimed_by
        )
        enqueue(build)
        count += 1
    return count
