"""Releasing and withdrawing versions: through localcloud's Marketplace and the real Scaleway
SDK, through the pages (roles, CSRF-protected POSTs, the override form), and release notes."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from builds.choices import CheckState
from builds.models import CheckResult, TestRun
from catalog.choices import LocalImageState, StorageType, VersionState
from catalog.models import AuditEntry, ImageVersion
from cloud import clients
from lifecycle import releases
from lifecycle.models import Release
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle import (
    COMMERCIAL_TYPES,
    ZONE_CODES,
    enable_zones,
    published_version,
    version_with_images,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def image():
    image = os_image("debian_bookworm")
    image.commercial_types = COMMERCIAL_TYPES
    image.save()
    enable_zones(*ZONE_CODES)
    return image


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def local_image_ids(version: ImageVersion, storage: str = StorageType.LOCAL) -> dict[str, str]:
    """zone -> the version's image of `storage` there."""
    return {
        li.zone.code: li.provider_image_id
        for li in version.local_images.filter(storage_type=storage)
    }


def zone_image_ids(version: ImageVersion) -> dict[str, list[str]]:
    """zone -> the version's images there, of every storage type (sorted)."""
    found: dict[str, list[str]] = {}
    for li in version.local_images.all():
        found.setdefault(li.zone.code, []).append(li.provider_image_id)
    return {zone: sorted(ids) for zone, ids in found.items()}


# --- readiness ------------------------------------------------------------------------------


def test_a_tested_version_published_in_every_enabled_zone_is_releasable(image) -> None:
    version = version_with_images(image, "2026-11-01")
    ready, reason = releases.is_releasable(version)
    assert ready, reason
    assert reason == (
        "Published in every enabled zone (2) on local storage and Block Storage, and every "
        "check passed there."
    )


def _block_runs(version: ImageVersion) -> QuerySet[TestRun]:
    return TestRun.objects.filter(version=version, storage_type=StorageType.SBS)


def test_a_version_untested_on_block_storage_in_a_zone_is_not_releasable(image) -> None:
    version = version_with_images(image, "2026-11-01")
    _block_runs(version).filter(zone__code="fr-par-2").delete()
    verdict = releases.readiness(version)
    assert not verdict.ready and verdict.overridable
    assert "not tested on Block Storage in fr-par-2" in verdict.reason
    assert "local storage" not in verdict.reason  # green there: not what is missing


def test_a_version_red_on_block_storage_is_not_releasable(image) -> None:
    version = version_with_images(image, "2026-11-01")
    CheckResult.objects.filter(
        test_run__in=_block_runs(version).filter(zone__code="fr-par-1"), check_name="archive"
    ).update(state=CheckState.FAILED, reason="the Block root volume is not attached")
    verdict = releases.readiness(version)
    assert not verdict.ready and verdict.overridable
    assert verdict.reason.startswith(
        "archive failed in fr-par-1 on Block Storage: the Block root volume is not attached"
    )


def test_a_version_missing_its_block_image_in_a_zone_is_not_releasable(image) -> None:
    version = version_with_images(image, "2026-11-01")
    version.local_images.filter(zone__code="fr-par-2", storage_type=StorageType.SBS).update(
        state=LocalImageState.ERROR
    )
    verdict = releases.readiness(version)
    assert not verdict.ready and verdict.overridable
    assert verdict.reason == (
        "Not published on Block Storage in fr-par-2 (published there in 1 of 2 enabled zones)."
    )


def test_a_version_published_on_local_storage_only_is_judged_on_it(image) -> None:
    image.storage_types = [StorageType.LOCAL]
    image.save()
    version = version_with_images(image, "2026-11-01")
    assert not _block_runs(version).exists()
    ready, reason = releases.is_releasable(version)
    assert ready, reason
    assert "on local storage, and every check passed" in reason


def test_a_published_but_untested_version_is_not_releasable_and_says_so(image) -> None:
    version = version_with_images(image, "2026-11-01", state=VersionState.PUBLISHED)
    ready, reason = releases.is_releasable(version)
    assert not ready
    assert "not tested yet" in reason


def test_a_version_missing_from_an_enabled_zone_is_not_releasable(image) -> None:
    version = version_with_images(image, "2026-11-01", zones=("fr-par-1",))
    enable_zones("nl-ams-1")
    ready, reason = releases.is_releasable(version)
    assert not ready
    assert "fr-par-2" in reason and "nl-ams-1" in reason


# --- through localcloud and the SDK -----------------------------------------------------------


def test_release_makes_the_label_resolve_to_the_new_version_in_the_marketplace(
    cloud: Cloud, image, qcow2_artefact: Path, release_manager
) -> None:
    old = published_version(image, "2026-08-01", qcow2_artefact, days_ago=90)
    new = published_version(image, "2026-11-01", qcow2_artefact)
    releases.release(old, release_manager)
    row = releases.release(new, release_manager)

    new.refresh_from_db()
    assert new.state == VersionState.RELEASED and new.released_at is not None
    assert row.publisher == "localcloud" and row.marketplace_version_id
    assert row.released_by == release_manager and row.override_reason == ""

    market = clients.marketplace_api()
    listed = market.list_images(include_eol=False)
    marketplace_image = next(i for i in listed.images if i.label == "debian_bookworm")
    versions = market.list_versions(image_id=marketplace_image.id)
    assert [v.name for v in versions.versions] == ["2026-08-01", "2026-11-01"]
    assert versions.versions[1].id == row.marketplace_version_id
    for zone, image_ids in zone_image_ids(new).items():
        found = market.list_local_images(image_label="debian_bookworm", zone=zone)
        assert sorted(li.id for li in found.local_images) == image_ids
        for li in found.local_images:
            assert sorted(li.compatible_commercial_types) == sorted(COMMERCIAL_TYPES)

    api = clients.instance_api()
    server = api.create_server(
        zone="fr-par-1", commercial_type="DEV1-S", image="debian_bookworm", name="from-label"
    ).server
    assert server.image.id == local_image_ids(new)["fr-par-1"]
    # The earlier release is still launchable by its image id.
    earlier = api.create_server(
        zone="fr-par-1", commercial_type="DEV1-S", image=local_image_ids(old)["fr-par-1"]
    ).server
    assert earlier.image.id == local_image_ids(old)["fr-par-1"]

    entry = AuditEntry.objects.filter(action="version.released", target_id=str(new.pk)).get()
    assert entry.actor == release_manager
    assert entry.before["current"] == str(old) and entry.after["current"] == str(new)


def test_withdraw_makes_the_previous_release_current_again_without_a_rebuild(
    cloud: Cloud, image, qcow2_artefact: Path, release_manager
) -> None:
    old = published_version(image, "2026-08-01", qcow2_artefact, days_ago=90)
    new = published_version(image, "2026-11-01", qcow2_artefact)
    releases.release(old, release_manager)
    releases.release(new, release_manager)

    response = logged_in(release_manager).post(
        reverse("lifecycle:withdraw", args=[new.pk]), {"reason": "breaks cloud-init on DEV1"}
    )
    assert response.status_code == 302

    new.refresh_from_db()
    assert new.state == VersionState.WITHDRAWN
    assert releases.current_release(image).version == old
    assert Release.objects.get(version=new).withdraw_reason == "breaks cloud-init on DEV1"
    market = clients.marketplace_api()
    for zone, image_ids in zone_image_ids(old).items():
        found = market.list_local_images(image_label="debian_bookworm", zone=zone)
        assert sorted(li.id for li in found.local_images) == image_ids
    server = (
        clients.instance_api()
        .create_server(zone="fr-par-2", commercial_type="DEV1-S", image="debian_bookworm")
        .server
    )
    assert server.image.id == local_image_ids(old)["fr-par-2"]
    entry = AuditEntry.objects.get(action="version.withdrawn")
    assert entry.message == "breaks cloud-init on DEV1"
    assert entry.after["current"] == str(old)


def test_release_without_a_green_matrix_needs_a_written_reason(
    cloud: Cloud, image, qcow2_artefact: Path, release_manager
) -> None:
    version = published_version(image, "2026-11-01", qcow2_artefact, state="published")
    client = logged_in(release_manager)
    url = reverse("lifecycle:release", args=[version.pk])

    response = client.post(url, {"override_reason": "  "}, follow=True)
    assert "not tested yet" in response.content.decode()
    assert "give a written reason" in response.content.decode()
    assert not Release.objects.exists()
    version.refresh_from_db()
    assert version.state == VersionState.PUBLISHED

    reason = "CVE-2026-0001 fix; the test runner is down"
    response = client.post(url, {"override_reason": reason}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Released 2026-11-01" in response.content.decode()
    row = Release.objects.get(version=version)
    assert row.override_reason == reason and "not tested yet" in row.readiness
    entry = AuditEntry.objects.get(action="version.released")
    assert reason in entry.message and entry.after["override_reason"] == reason
    found = clients.marketplace_api().list_local_images(
        image_label="debian_bookworm", zone="fr-par-1"
    )
    assert sorted(li.id for li in found.local_images) == zone_image_ids(version)["fr-par-1"]


# --- refusals that never reach the cloud ------------------------------------------------------


@pytest.mark.parametrize("who", ["viewer", "manager"])
def test_viewers_and_catalogue_managers_get_403_on_release_and_withdraw(
    request, image, who: str
) -> None:
    version = version_with_images(image, "2026-11-01")
    client = logged_in(request.getfixturevalue(who))
    for name, data in (("release", {"override_reason": "x"}), ("withdraw", {"reason": "x"})):
        response = client.post(reverse(f"lifecycle:{name}", args=[version.pk]), data)
        assert response.status_code == 403, name
    assert not Release.objects.exists()
    assert not AuditEntry.objects.exists()


def test_release_and_withdraw_need_post_and_a_csrf_token(image, release_manager) -> None:
    version = version_with_images(image, "2026-11-01")
    client = logged_in(release_manager)
    assert client.get(reverse("lifecycle:release", args=[version.pk])).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(release_manager)
    response = strict.post(reverse("lifecycle:release", args=[version.pk]))
    assert response.status_code == 403
    assert not Release.objects.exists()


def test_a_version_not_published_anywhere_cannot_be_released_even_with_a_reason(
    image, release_manager
) -> None:
    version = version_with_images(image, "2026-11-01", state=VersionState.BUILT, zones=())
    with pytest.raises(releases.ReleaseError, match="cannot be released"):
        releases.release(version, release_manager, "please")


def test_withdraw_is_refused_when_there_is_no_earlier_release(image, release_manager) -> None:
    version = version_with_images(image, "2026-11-01", state=VersionState.RELEASED)
    Release.objects.create(version=version, released_by=release_manager)
    with pytest.raises(releases.ReleaseError, match="no earlier release"):
        releases.withdraw(version, release_manager, "bad")
    version.refresh_from_db()
    assert version.state == VersionState.RELEASED


def test_withdraw_is_refused_for_a_version_that_is_not_the_current_release(
    image, release_manager
) -> None:
    old = version_with_images(image, "2026-08-01", state=VersionState.RELEASED, days_ago=90)
    new = version_with_images(image, "2026-11-01", state=VersionState.RELEASED)
    Release.objects.create(version=old, released_at=old.created_at)
    Release.objects.create(version=new)
    response = logged_in(release_manager).post(
        reverse("lifecycle:withdraw", args=[old.pk]), {"reason": "oops"}, follow=True
    )
    assert "Only the current release can be withdrawn" in response.content.decode()
    assert Release.objects.active().count() == 2


# --- release notes and pages ------------------------------------------------------------------


def test_release_notes_compare_with_the_previous_released_version(image) -> None:
    recipe = [
        {"type": "update_packages", "params": {}, "enabled": True},
        {"type": "install_packages", "params": {"packages": ["curl"]}, "enabled": True},
        {"type": "run_command", "params": {"command": "echo old"}, "enabled": True},
    ]
    released = version_with_images(
        image,
        "2026-08-01",
        state=VersionState.RELEASED,
        days_ago=90,
        upstream_serial="20260801-100",
        manifest=[{"name": "openssl", "version": "3.0.11-1"}, {"name": "vim", "version": "9.0"}],
        recipe=recipe,
    )
    Release.objects.create(version=released)
    # Built and tested after the release but never released: not what customers had.
    version_with_images(
        image, "2026-10-01", days_ago=30, manifest=[{"name": "x", "version": "1"}], recipe=[]
    )
    candidate = version_with_images(
        image,
        "2026-11-01",
        upstream_serial="20261101-200",
        manifest=[{"name": "openssl", "version": "3.0.15-1"}, {"name": "curl", "version": "8"}],
        recipe=[
            recipe[0],
            {"type": "install_packages", "params": {"packages": ["curl", "jq"]}, "enabled": True},
            {"type": "enable_unit", "params": {"unit": "app.service"}, "enabled": True},
        ],
    )

    notes = releases.release_notes(candidate)

    assert notes["previous"] == released
    assert notes["packages"].changed == [("openssl", "3.0.11-1", "3.0.15-1")]
    assert [p["name"] for p in notes["packages"].added] == ["curl"]
    assert [p["name"] for p in notes["packages"].removed] == ["vim"]
    assert notes["upstream_serial"] == {
        "before": "20260801-100",
        "after": "20261101-200",
        "changed": True,
    }
    assert notes["recipe"]["added"] == ["enable_unit: app.service"]
    assert notes["recipe"]["removed"] == ["run_command: echo old"]
    assert notes["recipe"]["changed"] == [("install_packages: curl", "install_packages: curl jq")]


def test_the_release_panel_shows_the_buttons_to_release_managers_only(
    image, viewer, release_manager
) -> None:
    version = version_with_images(image, "2026-11-01", state=VersionState.PUBLISHED)
    url = reverse("lifecycle:release_panel", args=[version.pk])

    page = logged_in(release_manager).get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "not tested yet" in page
    assert 'data-testid="release-override"' in page and 'name="override_reason"' in page
    assert 'data-testid="release-notes"' in page

    page = logged_in(viewer).get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "not tested yet" in page
    assert "release-override" not in page and 'data-testid="release"' not in page
    notes = logged_in(viewer).get(reverse("lifecycle:release_notes", args=[version.pk]))
    assert notes.status_code == 200 and "First release of debian_bookworm" in notes.content.decode()


def test_the_release_history_lists_every_release_with_its_override_reason(image, viewer) -> None:
    old = version_with_images(image, "2026-08-01", state=VersionState.WITHDRAWN, days_ago=90)
    new = version_with_images(image, "2026-11-01", state=VersionState.RELEASED)
    Release.objects.create(version=old, override_reason="hotfix", withdraw_reason="bad")
    Release.objects.create(version=new)
    Release.objects.filter(version=old).update(withdrawn_at=old.created_at)
    client = logged_in(viewer)
    page = client.get(reverse("lifecycle:release_history", args=[image.label])).content.decode()
    assert "hotfix" in page and "2026-08-01" in page and "Current release" in page
    partial = client.get(
        reverse("lifecycle:release_history", args=[image.label]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="release-history"' in partial and "<html" not in partial


def test_the_release_history_costs_the_same_queries_for_two_or_twenty_releases(
    image, viewer
) -> None:
    client = logged_in(viewer)
    url = reverse("lifecycle:release_history", args=[image.label])

    def release(count: int, start: int) -> None:
        for n in range(start, start + count):
            version = ImageVersion.objects.create(
                image=image, name=f"2026-01-{n + 1:02d}", manifest=[{"name": "bash"}]
            )
            Release.objects.create(version=version)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    release(2, 0)
    few = queries()
    release(18, 2)
    assert queries() == few <= 10


def test_releasing_a_base_image_rebuilds_its_instantapps(
    cloud: Cloud, image, qcow2_artefact: Path, release_manager
) -> None:
    from builds.choices import Trigger
    from builds.models import Build
    from tests.catalog.factories import instantapp

    app = instantapp("wordpress_on_base", image)
    version = published_version(image, "2026-11-01", qcow2_artefact)
    releases.release(version, release_manager)
    build = Build.objects.get(image=app)
    assert build.trigger == Trigger.BASE_RELEASE
    assert version.name in build.reason
