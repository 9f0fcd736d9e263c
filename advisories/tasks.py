"""django-q2 entry points of the advisories app."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django_q.tasks import async_task

from advisories import act, importer, matching
from advisories.models import Exposure
from catalog.models import ImageVersion

logger = logging.getLogger("advisories.match")

MATCH_VERSION_TASK = "advisories.tasks.match_version_task"


def import_osv_task() -> str:
    """The daily run: import the exports, match every version, queue security rebuilds.

    Failures are recorded per export, so the task itself does not raise."""
    results = importer.import_all()
    matched = matching.match_all()
    decisions = act.queue_security_rebuilds()
    failed = [r.export for r in results if not r.ok]
    summary = f"OSV import: {len(results) - len(failed)}/{len(results)} export(s) OK"
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    queued = [d.image for d in decisions if d.queued]
    return summary + f"; {matched} version(s) matched; security rebuilds: {len(queued)}"


def match_version_task(version_id: int) -> str:
    """A version a build has just recorded, matched against the stored advisories at once
    rather than by the next daily run. Its packages that the kept exports were never scanned
    for are looked up there first (a scan that fails is logged, and the version is matched
    with what is stored). A failure is logged and left to the daily run, which scans and
    matches again; the task does not raise."""
    version = (
        ImageVersion.objects.select_related("image__upstream", "image__base_image__upstream")
        .filter(pk=version_id)
        .first()
    )
    if version is None:
        return f"version {version_id}: gone, nothing to match"
    notes: list[str] = []
    try:
        notes += importer.rescan_for_new_packages(version.image)
    except Exception as exc:
        logger.exception("scanning the kept exports for version %s failed", version_id)
        notes.append(f"the kept exports could not be scanned again ({exc}); the daily run retries")
    try:
        matching.match_all([version])
    except Exception:
        logger.exception("matching version %s failed; the daily run retries", version_id)
        return f"version {version_id}: matching failed (logged); the daily run retries"
    exposures = Exposure.objects.filter(version_id=version_id).count()
    return f"version {version_id}: matched, {exposures} exposure(s)" + "".join(
        f"; {note}" for note in notes
    )


def version_recorded(sender: Any, version: ImageVersion, **kwargs: Any) -> None:
    """Receiver of builds' `version_recorded`: queue the new version's matching (on the
    default cluster, once the version is committed). Queueing that fails is logged: the
    daily run matches the version."""

    def enqueue() -> None:
        try:
            async_task(MATCH_VERSION_TASK, version.pk, task_name=f"match-version-{version.pk}")
        except Exception:
            logger.exception("matching of version %s not queued; the daily run does it", version.pk)

    transaction.on_commit(enqueue)
