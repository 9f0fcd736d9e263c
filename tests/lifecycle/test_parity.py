"""Zone parity against a real localcloud through the real SDK: what is not published shows at
once, what the cloud lost shows after the check, a zone the check cannot read keeps its rows
and says why, and "Publish the missing" republishes after a confirmation, for managers only."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ

from catalog.choices import StorageType
from catalog.models import AuditEntry, Zone
from cloud import clients
from lifecycle import parity, releases, zones
from lifecycle.models import ParityProblem, ZoneParityGap
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle import COMMERCIAL_TYPES, published_version, run_queued, version_with_images

pytestmark = pytest.mark.django_db

LOCAL, SBS = StorageType.LOCAL, StorageType.SBS


def _released(artefact: Path, release_manager) -> object:
    """debian_bookworm's current version, published for real in fr-par-1 and released."""
    Zone.objects.create(code="fr-par-1", enabled=True)
    image = os_image("debian_bookworm")
    image.commercial_types = COMMERCIAL_TYPES
    image.save()
    current = published_version(image, "2026-11-01", artefact)
    releases.release(current, release_manager)
    return current


def _problems() -> list[tuple[str, str, str]]:
    return sorted(
        (g.zone.code, g.storage_type, g.problem) for g in parity.live_gaps() + parity.cloud_gaps()
    )


def test_gaps_show_as_they_happen_and_after_the_check_and_publish_the_missing_fixes_them(
    cloud: Cloud, qcow2_artefact: Path, release_manager, manager, django_capture_on_commit_callbacks
) -> None:
    current = _released(qcow2_artefact, release_manager)
    report = parity.check()
    assert (report.gaps, report.errors) == (0, [])
    assert _problems() == []

    # A zone enabled without the publish its toggle would queue (created enabled), and the
    # Block Storage image of fr-par-1 deleted outside the factory.
    Zone.objects.create(code="fr-par-2", enabled=True)
    assert _problems() == [
        ("fr-par-2", LOCAL, ParityProblem.NOT_PUBLISHED),
        ("fr-par-2", SBS, ParityProblem.NOT_PUBLISHED),
    ]
    sbs = current.local_images.get(zone__code="fr-par-1", storage_type=SBS)
    clients.instance_api().delete_image(zone="fr-par-1", image_id=sbs.provider_image_id)
    report = parity.check()
    assert report.gaps == 1
    assert _problems() == [
        ("fr-par-1", SBS, ParityProblem.IMAGE_GONE),
        ("fr-par-2", LOCAL, ParityProblem.NOT_PUBLISHED),
        ("fr-par-2", SBS, ParityProblem.NOT_PUBLISHED),
    ]
    gone = ZoneParityGap.objects.get()
    assert sbs.provider_image_id in gone.detail and "Block Storage" in gone.detail

    # The home page shows both kinds.
    client = Client()
    client.force_login(manager)
    html = client.get("/").content.decode()
    assert "fr-par-2 (Local storage)" in html and "fr-par-2 (Block Storage)" in html
    assert "Image gone from the cloud" in html

    # Publish the missing: the confirmation lists both zones; a confirmed POST queues them.
    page = client.get(reverse("lifecycle:parity_fix")).content.decode()
    assert "2 version-zone pairs will be published again" in page
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("lifecycle:parity_fix"), {"confirm": "yes"})
    assert response.status_code == 302
    assert [q.task["args"] for q in OrmQ.objects.order_by("id")] == [
        (current.build.pk, current.pk, "fr-par-1"),
        (current.build.pk, current.pk, "fr-par-2"),
    ]
    assert AuditEntry.objects.filter(action=parity.FIX_QUEUED_ACTION).count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        run_queued(zones.PUBLISH_TASK)

    # Every (zone, storage type) is published again; what is new is not offered until tested.
    assert [g for g in parity.live_gaps()] == []
    parity.check()
    assert _problems() == [
        ("fr-par-1", SBS, ParityProblem.NOT_OFFERED),
        ("fr-par-2", LOCAL, ParityProblem.NOT_OFFERED),
        ("fr-par-2", SBS, ParityProblem.NOT_OFFERED),
    ]
    # The local image of fr-par-1 was reused, not made again.
    assert current.local_images.filter(zone__code="fr-par-1").count() == 2


def test_a_zone_the_check_cannot_read_keeps_its_rows_and_says_why(
    cloud: Cloud, qcow2_artefact: Path, release_manager
) -> None:
    current = _released(qcow2_artefact, release_manager)
    local = current.local_images.get(zone__code="fr-par-1", storage_type=LOCAL)
    clients.instance_api().delete_image(zone="fr-par-1", image_id=local.provider_image_id)
    parity.check()
    assert _problems() == [("fr-par-1", LOCAL, ParityProblem.IMAGE_GONE)]

    cloud.fault(
        operation="GET /instance/v1/zones/{zone}/images", zone="fr-par-1", count=50, status=503
    )
    report = parity.check()
    assert len(report.errors) == 1 and "fr-par-1" in report.errors[0]
    assert sorted(ZoneParityGap.objects.values_list("problem", flat=True)) == [
        ParityProblem.IMAGE_GONE,  # kept: the outage hides nothing
        ParityProblem.NOT_CHECKED,
    ]
    unchecked = ZoneParityGap.objects.get(problem=ParityProblem.NOT_CHECKED)
    assert "could not read the zone" in unchecked.detail and "503" in unchecked.detail
    # A fix is planned for the gap, none for the outage.
    assert [(f.zone.code, len(f.problems)) for f in parity.planned_fixes()] == [("fr-par-1", 1)]


def test_a_version_that_cannot_be_published_again_is_listed_with_the_reason(
    manager, django_capture_on_commit_callbacks
) -> None:
    image = os_image("ubuntu_jammy")
    # Released, recorded in fr-par-1 only, with no build (adopted, or its build deleted).
    version_with_images(image, "2026-10-01", zones=("fr-par-1",), state="released")
    Zone.objects.create(code="fr-par-2", enabled=True)
    image.versions.update(released_at="2026-10-02T00:00:00Z")
    [fix] = parity.planned_fixes()
    assert fix.zone.code == "fr-par-2" and "rebuild the image" in fix.skipped
    client = Client()
    client.force_login(manager)
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("lifecycle:parity_fix"), {"confirm": "yes"})
    assert not OrmQ.objects.exists()
    page = client.get(reverse("lifecycle:parity")).content.decode()
    assert "rebuild the image" in page


def test_viewers_see_the_page_but_cannot_check_or_publish(
    viewer, django_capture_on_commit_callbacks
) -> None:
    client = Client()
    client.force_login(viewer)
    page = client.get(reverse("lifecycle:parity"))
    assert page.status_code == 200 and b"parity-check" not in page.content
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(reverse("lifecycle:parity_check")).status_code == 403
        assert client.post(reverse("lifecycle:parity_fix"), {"confirm": "yes"}).status_code == 403
    assert not OrmQ.objects.exists()
