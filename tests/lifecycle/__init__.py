"""Tests of the lifecycle app, and the few builders its release tests share.

`published_version` publishes a real QCOW2 through builds.publish (so its LocalImages point
at real instance images in localcloud); `version_with_images` makes rows only, for tests that
never reach the cloud. `post_status` is the image-request tests' status change in the view;
`run_queued` plays the worker for the tasks a view queued.
"""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from pathlib import Path
from typing import Any

from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from builds.choices import CheckState, TestRunState
from builds.models import Build, CheckResult, TestRun
from builds.testing.orchestration import check_names, published_storage
from catalog.choices import ImageState, LocalImageState, StorageType, VersionState
from catalog.models import Image, ImageVersion, LocalImage, Zone
from lifecycle import deprecation
from lifecycle.models import ImageRequest, RequestStatusChange
from tests.builds.factories import publish_for_real

ZONE_CODES = ("fr-par-1", "fr-par-2")
COMMERCIAL_TYPES = ["DEV1-S", "DEV1-M"]


def deprecate_long_ago(image: Image, days: int = 200) -> None:
    """Deprecate the image for real (the Marketplace is told), `days` ago."""
    then = timezone.now() - dt.timedelta(days=days)
    Image.objects.filter(pk=image.pk).update(
        state=ImageState.DEPRECATION_SCHEDULED, deprecation_date=timezone.localdate(then)
    )
    image.refresh_from_db()
    assert deprecation.deprecate(image, then)


def enable_zones(*codes: str) -> list[Zone]:
    return [Zone.objects.get_or_create(code=c, defaults={"enabled": True})[0] for c in codes]


def _version(image: Image, name: str, state: str, days_ago: int, **fields: object) -> ImageVersion:
    return ImageVersion.objects.create(
        image=image,
        arch="x86_64",
        name=name,
        state=state,
        created_at=timezone.now() - dt.timedelta(days=days_ago),
        **fields,
    )


def record_checks(version: ImageVersion, state: str) -> None:
    """Record a finished test run per enabled zone and storage type the version is published
    with there (local storage where it is not published) whose every check ended as the
    version's state says (tested: all passed; test failed: the first check failed). The
    release rules read these results, not the version's state."""
    if state not in (VersionState.TESTED, VersionState.TEST_FAILED):
        return
    published = published_storage(version)
    for zone in Zone.objects.filter(enabled=True):
        for storage in published.get(zone.code) or [StorageType.LOCAL]:
            _finished_run(version, zone, storage, state)


def _finished_run(version: ImageVersion, zone: Zone, storage: str, state: str) -> None:
    run = TestRun.objects.create(
        version=version,
        zone=zone,
        storage_type=storage,
        checks=check_names(),
        state=TestRunState.FINISHED,
    )
    for i, name in enumerate(check_names()):
        failed = state == VersionState.TEST_FAILED and i == 0
        CheckResult.objects.create(
            test_run=run,
            check_name=name,
            state=CheckState.FAILED if failed else CheckState.PASSED,
            reason="the guest did not answer" if failed else "",
            duration=1.0,
        )


def version_with_images(
    image: Image,
    name: str,
    *,
    state: str = VersionState.TESTED,
    days_ago: int = 0,
    zones: tuple[str, ...] = ZONE_CODES,
    **fields: object,
) -> ImageVersion:
    """A version with an available LocalImage (made-up image id) in each of `zones`, on each
    storage type of its image."""
    version = _version(image, name, state, days_ago, **fields)
    for zone in enable_zones(*zones):
        for kind in image.storage_types:
            LocalImage.objects.create(
                version=version,
                zone=zone,
                storage_type=kind,
                provider_image_id=str(uuid.uuid4()),
                state=LocalImageState.AVAILABLE,
            )
    record_checks(version, state)
    return version


def published_version(
    image: Image,
    name: str,
    artefact: Path,
    *,
    state: str = VersionState.TESTED,
    days_ago: int = 0,
    **fields: object,
) -> ImageVersion:
    """A version published for real in every enabled zone of localcloud."""
    version = _version(image, name, VersionState.BUILT, days_ago, artefact_path=str(artefact))
    build = publish_for_real(version, artefact)
    Build.objects.filter(pk=build.pk).update(state="done")
    ImageVersion.objects.filter(pk=version.pk).update(state=state, **fields)
    version.refresh_from_db()
    record_checks(version, state)
    return version


def post_status(
    client: Client, manager: Any, request: ImageRequest, status: str, note: str
) -> RequestStatusChange:
    """`manager` sets `request`'s status and note in the view, whose on-commit callbacks run
    (as with pytest-django's `django_capture_on_commit_callbacks`); returns the one change it
    recorded."""
    client.force_login(manager)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            reverse("lifecycle:request_status", args=[request.pk]),
            {"status": status, "note": note},
        )
    assert response.status_code == 302
    return RequestStatusChange.objects.get()


def run_queued(func: str) -> list[Any]:
    """Run, as a worker of the ORM broker would, the queued tasks of `func` (a dotted path),
    oldest first, taking them off the queue; returns what each returned."""
    results = []
    for queued in OrmQ.objects.order_by("id"):
        task = queued.task
        if task["func"] != func:
            continue
        queued.delete()
        module, name = func.rsplit(".", 1)
        function = getattr(importlib.import_module(module), name)
        results.append(function(*task["args"], **task["kwargs"]))
    return results
