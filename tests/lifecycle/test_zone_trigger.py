"""The "zone enabled" trigger: enabling a zone queues the publish of the current versions
there (on each version's architecture queue, with the reason audited), and the queued task
creates the image in that zone of localcloud; disabling a zone queues nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from builds.choices import CheckState, TestRunState
from builds.models import TestRun
from builds.publish import image_name
from builds.signals import test_run_ended
from builds.testing import orchestration
from catalog.choices import LocalImageState, StorageType, VersionState
from catalog.models import AuditEntry, Zone
from cloud import clients
from lifecycle import releases, zones
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle import COMMERCIAL_TYPES, published_version, version_with_images

pytestmark = pytest.mark.django_db

NEW_ZONE = "fr-par-2"


def _toggle(user, code: str, capture, **data: str) -> None:
    """Enabling needs `confirm=yes` (the zones page asks first: tests/catalog/test_zones.py)."""
    client = Client()
    client.force_login(user)
    with capture(execute=True):
        response = client.post(reverse("catalog:zone_toggle", args=[code]), data)
    assert response.status_code == 302


def _queued() -> list[tuple[str, dict]]:
    return [(q.key, q.task) for q in OrmQ.objects.order_by("id")]


def test_enabling_a_zone_publishes_the_current_versions_there(
    cloud: Cloud,
    qcow2_artefact: Path,
    admin_user,
    release_manager,
    django_capture_on_commit_callbacks,
) -> None:
    Zone.objects.create(code="fr-par-1", enabled=True)
    Zone.objects.create(code=NEW_ZONE, enabled=False)
    image = os_image("debian_bookworm")
    image.commercial_types = COMMERCIAL_TYPES
    image.save()
    old = published_version(image, "2026-08-01", qcow2_artefact, days_ago=30)
    current = published_version(image, "2026-11-01", qcow2_artefact)
    releases.release(old, release_manager)
    releases.release(current, release_manager)
    # A version built but never released is not offered anywhere: it is not published.
    published_version(image, "2026-12-01", qcow2_artefact, state=VersionState.PUBLISHED)
    OrmQ.objects.all().delete()

    _toggle(
        admin_user, NEW_ZONE, django_capture_on_commit_callbacks, action="enable", confirm="yes"
    )

    assert Zone.objects.get(code=NEW_ZONE).enabled
    [(queue, task)] = _queued()
    assert queue == "long"  # the x86_64 build queue
    assert task["func"] == zones.PUBLISH_TASK == "lifecycle.zones.publish_in_zone"
    assert task["args"] == (current.build.pk, current.pk, NEW_ZONE)
    entry = AuditEntry.objects.get(action=zones.QUEUED_ACTION)
    assert entry.image == image and entry.target_id == str(current.pk)
    assert entry.after["trigger"] == "new_zone" and entry.after["zone"] == NEW_ZONE
    assert "zone fr-par-2 was enabled" in entry.message

    # The worker runs the task: the image now exists in the new zone, found through the SDK.
    with django_capture_on_commit_callbacks(execute=True):
        result = zones.publish_in_zone(*task["args"])
    locals_ = {li.storage_type: li for li in current.local_images.filter(zone__code=NEW_ZONE)}
    assert set(locals_) == {StorageType.LOCAL, StorageType.SBS}
    local = locals_[StorageType.LOCAL]
    assert local.state == LocalImageState.AVAILABLE and local.provider_image_id in result
    found = clients.instance_api().get_image(zone=NEW_ZONE, image_id=local.provider_image_id)
    assert found.image.state == "available"
    assert found.image.name == image_name(current)
    assert AuditEntry.objects.filter(action=zones.PUBLISHED_ACTION).count() == 1
    # Only the current version went there.
    assert not old.local_images.filter(zone__code=NEW_ZONE).exists()

    # Then it is tested there, once per storage type; the label resolves in the new zone on a
    # storage type only once every check passed on it.
    runs = {r.storage_type: r for r in TestRun.objects.filter(version=current, zone__code=NEW_ZONE)}
    assert set(runs) == {StorageType.LOCAL, StorageType.SBS}
    for run in runs.values():
        assert run.reason == f"Zone {NEW_ZONE} enabled" and run.state == TestRunState.QUEUED
    queued = AuditEntry.objects.get(action=zones.TESTS_QUEUED_ACTION)
    assert queued.after["storage_types"] == [StorageType.LOCAL, StorageType.SBS]
    assert "on local storage and Block Storage" in queued.message
    assert [t["func"] for _, t in _queued()][-1] == orchestration.RUN_TASK
    market = clients.marketplace_api()

    def offered() -> set[str]:
        found = market.list_local_images(image_label="debian_bookworm", zone=NEW_ZONE)
        ids = {i.id for i in found.local_images}
        return {st for st, li in locals_.items() if li.provider_image_id in ids}

    def end_run(storage: str, state: str) -> None:
        # What the runner leaves when the checks end (the checks themselves boot VMs: vm tier).
        run = runs[storage]
        run.results.update(state=state, duration=1.0)
        TestRun.objects.filter(pk=run.pk).update(state=TestRunState.FINISHED)
        run.refresh_from_db()
        test_run_ended.send(sender=TestRun, test_run=run)

    end_run(StorageType.LOCAL, CheckState.FAILED)
    assert offered() == set()
    failed = AuditEntry.objects.get(action=zones.TESTS_FAILED_ACTION)
    assert failed.after == {"zone": NEW_ZONE, "storage_type": StorageType.LOCAL}
    assert "on local storage" in failed.message
    end_run(StorageType.LOCAL, CheckState.PASSED)
    assert offered() == {StorageType.LOCAL}  # Block Storage is not tested yet: not offered
    end_run(StorageType.SBS, CheckState.FAILED)
    assert offered() == {StorageType.LOCAL}
    assert AuditEntry.objects.filter(action=zones.TESTS_FAILED_ACTION).count() == 2
    end_run(StorageType.SBS, CheckState.PASSED)
    assert offered() == {StorageType.LOCAL, StorageType.SBS}
    offers = AuditEntry.objects.filter(action=zones.OFFERED_ACTION).order_by("id")
    assert [e.after["storage_type"] for e in offers] == [StorageType.LOCAL, StorageType.SBS]
    assert "now offered there on Block Storage" in offers[1].message


def test_disabling_a_zone_or_saving_an_enabled_one_queues_nothing(
    admin_user, django_capture_on_commit_callbacks
) -> None:
    image = os_image("debian_bookworm")
    version_with_images(
        image,
        "2026-11-01",
        zones=("fr-par-1", NEW_ZONE),
        state=VersionState.RELEASED,
        released_at=timezone.now(),
    )
    OrmQ.objects.all().delete()

    _toggle(admin_user, NEW_ZONE, django_capture_on_commit_callbacks, action="disable")
    assert not Zone.objects.get(code=NEW_ZONE).enabled
    zone = Zone.objects.get(code="fr-par-1")
    with django_capture_on_commit_callbacks(execute=True):
        zone.save()  # still enabled: not a transition
    assert _queued() == []
    assert not AuditEntry.objects.filter(action__startswith="zone.publish").exists()
