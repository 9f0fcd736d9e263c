"""Asking for builds: one entry point that never starts a duplicate, and enqueues after commit.

Builds of each architecture go to their own queue, so that a build waits for a worker that
can run its architecture's package manager (an x86_64 appliance cannot run arm64 binaries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django_q.tasks import async_task

from builds.choices import Trigger
from builds.models import Build
from catalog import audit
from catalog.models import Image

log = logging.getLogger(__name__)


def queue_for(arch: str) -> str:
    """The django-q2 cluster that runs builds of `arch`."""
    return settings.BUILD_QUEUES.get(arch, f"long-{arch}")


def enqueue(build: Build) -> None:
    """Send the build's task to its architecture's queue once the transaction commits."""
    build_id, cluster = build.pk, queue_for(build.arch)

    def send() -> None:
        async_task(
            "builds.tasks.run_build",
            build_id,
            cluster=cluster,
            task_name=f"build-{build_id}",
            group="builds",
        )

    transaction.on_commit(send)


@dataclass
class Requested:
    """What asking for a build gave: the build, and whether it was created by this call."""

    build: Build
    created: bool


def request_build(
    image: Image,
    arch: str,
    *,
    trigger: str = Trigger.MANUAL,
    reason: str = "",
    user: User | AnonymousUser | None = None,
) -> Requested:
    """Queue a build of `image` for `arch`, or return the one already queued or running.

    A partial unique index allows one active build per image and architecture, so two
    clicks (or two web servers) racing each other still produce a single build.
    """
    existing = Build.objects.active().filter(image=image, arch=arch).first()
    if existing:
        return Requested(existing, False)
    try:
        with transaction.atomic():
            build = Build.objects.create(
                image=image,
                arch=arch,
                trigger=trigger,
                reason=reason or Trigger(trigger).label,
                requested_by=user if user is not None and user.is_authenticated else None,
            )
            build.ensure_stages()
            audit.record(
                "build.requested",
                actor=user,
                image=image,
                target=build,
                after={"arch": arch, "trigger": trigger},
                message=build.reason,
            )
            enqueue(build)
    except IntegrityError:
        existing = Build.objects.active().filter(image=image, arch=arch).first()
        if existing is None:
            raise
        return Requested(existing, False)
    log.info("queued %s (%s): %s", build, trigger, build.reason)
    return Requested(build, True)
