"""Retirement removes the image from the cloud: its instance images and their snapshots in
every zone, its versions from the Marketplace; a zone that fails stays marked, with the
reason on the image's page, until a later daily run finishes it. All against a real
localcloud through the real Scaleway SDK."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.urls import reverse
from scaleway_core.api import ScalewayException

from catalog.choices import ImageState, LocalImageState, StorageType, VersionState
from catalog.models import AuditEntry, Image, ImageVersion, LocalImage
from cloud import clients
from lifecycle import deprecation, releases
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ZONES, Cloud
from tests.cloud.sbs import instance_ids
from tests.lifecycle import (
    COMMERCIAL_TYPES,
    deprecate_long_ago,
    enable_zones,
    published_version,
    version_with_images,
)

pytestmark = pytest.mark.django_db

DELETE_IMAGE = "DELETE /instance/v1/zones/{zone}/images/{image_id}"
DELETE_SNAPSHOT = "DELETE /instance/v1/zones/{zone}/snapshots/{snapshot_id}"
GET_IMAGE = "GET /instance/v1/zones/{zone}/images/{image_id}"


@pytest.fixture(autouse=True)
def _retention(settings) -> None:
    settings.RETENTION_DAYS = 180


@pytest.fixture
def image() -> Image:
    image = os_image("debian_bookworm")
    image.commercial_types = COMMERCIAL_TYPES
    # Local storage only: these tests count Instance images and snapshots (Block Storage
    # images have their own tests, test_retirement_block).
    image.storage_types = [StorageType.LOCAL]
    image.save()
    enable_zones(*ZONES)
    return image


def publish_versions(image: Image, artefact: Path, tmp_path: Path, *names: str) -> list:
    """Versions published for real in every zone, each with its own copy of the artefact
    (retirement deletes the artefact files)."""
    versions = []
    for name in names:
        copy = tmp_path / f"{name}.qcow2"
        shutil.copyfile(artefact, copy)
        versions.append(published_version(image, name, copy))
    return versions


def ids_of(local: LocalImage) -> set[str]:
    return {local.provider_image_id, local.snapshot_id}


def retired_entry(image: Image) -> AuditEntry:
    return AuditEntry.objects.get(image=image, action="deprecation.retired")


def armed_faults(cloud: Cloud) -> list[dict]:
    return cloud.process.operator("GET", "faults")["faults"]


def run_daily() -> deprecation.TransitionSummary:
    return deprecation.run_transitions()


def test_retiring_removes_the_images_and_snapshots_in_every_zone_and_the_marketplace_versions(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path, release_manager
) -> None:
    first, second = publish_versions(image, qcow2_artefact, tmp_path, "2026-10-01", "2026-11-01")
    releases.release(second, release_manager)
    locals_ = list(LocalImage.objects.filter(version__image=image).select_related("zone"))
    assert len(locals_) == 2 * len(ZONES)
    for local in locals_:
        assert ids_of(local) <= instance_ids(local.zone.code)
    deprecate_long_ago(image)

    assert deprecation.retire(image)

    image.refresh_from_db()
    assert image.state == ImageState.RETIRED
    for zone in ZONES:
        assert instance_ids(zone) == set(), zone
    for local in LocalImage.objects.filter(version__image=image):
        assert (local.state, local.error) == (LocalImageState.DELETED, "")
    for version in (first, second):
        version.refresh_from_db()
        assert (version.state, version.artefact_path) == (VersionState.RETIRED, "")
    assert not list(tmp_path.glob("*.qcow2"))

    entry = retired_entry(image)
    assert sorted(entry.after["cloud_removed"]) == sorted(
        [f"{local.zone.code} image {local.provider_image_id}" for local in locals_]
        + [f"{local.zone.code} snapshot {local.snapshot_id}" for local in locals_]
    )
    assert entry.after["cloud_failed"] == [] and entry.after["cloud_already_gone"] == []
    assert len(entry.after["artefacts"]) == 2
    assert entry.after["marketplace"] == "told"
    assert "6 image(s) and 6 snapshot(s) removed" in entry.message
    assert "done in fr-par-1, fr-par-2, nl-ams-1" in entry.message

    # The Marketplace keeps the label, deprecated, with no version left to offer.
    market = clients.marketplace_api()
    listed = {i.label: i for i in market.list_images(include_eol=True).images}
    assert image.label in listed
    assert image.label not in [i.label for i in market.list_images(include_eol=False).images]
    assert market.list_versions(image_id=listed[image.label].id).total_count == 0
    with pytest.raises(ScalewayException) as refused:
        clients.instance_api().create_server(
            zone="fr-par-1", commercial_type="DEV1-S", image=image.label
        )
    assert "deprecated" in str(refused.value)

    # Again: nothing to do, and the cloud is not even asked.
    for operation in (GET_IMAGE, DELETE_IMAGE, DELETE_SNAPSHOT):
        cloud.fault(operation=operation, count=1, status=500)
    entries = AuditEntry.objects.count()
    assert not deprecation.retire(image)
    summary = run_daily()
    assert (summary.retired, summary.cloud_retried) == ([], [])
    assert AuditEntry.objects.count() == entries
    assert len(armed_faults(cloud)) == 3


def test_a_failing_zone_stays_marked_with_its_reason_until_the_next_daily_run_finishes_it(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path, settings, client, viewer
) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 2
    publish_versions(image, qcow2_artefact, tmp_path, "2026-10-01", "2026-11-01")
    paris = list(LocalImage.objects.filter(version__image=image, zone__code="fr-par-1"))
    left_in_paris = set().union(*(ids_of(local) for local in paris))
    deprecate_long_ago(image)
    # fr-par-1 is the first zone retirement cleans: its API answers 503 to both attempts of
    # the first image deletion; its second image is then not even tried.
    cloud.fault(operation=DELETE_IMAGE, count=2, status=503, message="zone under maintenance")

    summary = run_daily()

    assert summary.retired == [image.label] and summary.cloud_retried == []
    image.refresh_from_db()
    assert image.state == ImageState.RETIRED
    assert armed_faults(cloud) == []
    assert instance_ids("fr-par-1") == left_in_paris
    assert instance_ids("fr-par-2") == set() and instance_ids("nl-ams-1") == set()
    errors = []
    for local in LocalImage.objects.filter(version__image=image).select_related("zone"):
        if local.zone.code == "fr-par-1":
            assert local.state == LocalImageState.DELETE_FAILED
            assert "zone under maintenance" in local.error
            errors.append(local.error)
        else:
            assert (local.state, local.error) == (LocalImageState.DELETED, "")
    assert sum(error.startswith("not tried, fr-par-1 failed earlier") for error in errors) == 1
    entry = retired_entry(image)
    assert len(entry.after["cloud_failed"]) == 2
    assert all(f.startswith("fr-par-1 ") for f in entry.after["cloud_failed"])
    assert "zone under maintenance" in entry.after["cloud_failed"][0]
    assert "4 image(s) and 4 snapshot(s) removed" in entry.message
    assert "left for the next daily run in fr-par-1" in entry.message

    client.force_login(viewer)
    panel = client.get(
        reverse("lifecycle:deprecation_panel", args=[image.label]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "Still in fr-par-1" in panel and "zone under maintenance" in panel
    assert "Removed: 4 image(s) with their snapshots in fr-par-2, nl-ams-1." in panel
    version_page = client.get(paris[0].version.get_absolute_url()).content.decode()
    assert "Deletion failed" in version_page and "zone under maintenance" in version_page

    # The next day: the zone answers again and the daily run finishes it.
    summary = run_daily()

    assert summary.retired == [] and summary.cloud_retried == [image.label]
    assert summary.cloud_left == []
    assert instance_ids("fr-par-1") == set()
    assert set(LocalImage.objects.filter(version__image=image).values_list("state", flat=True)) == {
        LocalImageState.DELETED
    }
    retried = AuditEntry.objects.get(image=image, action="deprecation.cloud_removal_retried")
    assert len(retried.after["cloud_removed"]) == 4 and retried.after["cloud_failed"] == []
    panel = client.get(
        reverse("lifecycle:deprecation_panel", args=[image.label]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "Still in" not in panel
    assert "Removed: 6 image(s) with their snapshots in fr-par-1, fr-par-2, nl-ams-1." in panel

    # And after that, the daily run has nothing left to do.
    entries = AuditEntry.objects.count()
    summary = run_daily()
    assert (summary.retired, summary.cloud_retried) == ([], [])
    assert AuditEntry.objects.count() == entries


def test_a_snapshot_left_after_its_image_was_deleted_is_found_again_by_the_next_run(
    cloud: Cloud, image: Image, qcow2_artefact: Path, tmp_path: Path
) -> None:
    (version,) = publish_versions(image, qcow2_artefact, tmp_path, "2026-11-01")
    first = version.local_images.select_related("zone").order_by("zone__code").first()
    deprecate_long_ago(image)
    cloud.fault(operation=DELETE_SNAPSHOT, count=1, status=500, message="disk array offline")

    assert deprecation.retire(image)

    first.refresh_from_db()
    assert first.state == LocalImageState.DELETE_FAILED and "disk array offline" in first.error
    assert instance_ids(first.zone.code) == {first.snapshot_id}  # the image went, its snapshot not
    entry = retired_entry(image)
    assert f"{first.zone.code} image {first.provider_image_id}" in entry.after["cloud_removed"]

    summary = run_daily()

    assert summary.cloud_retried == [image.label]
    first.refresh_from_db()
    assert first.state == LocalImageState.DELETED
    assert instance_ids(first.zone.code) == set()
    retried = AuditEntry.objects.get(image=image, action="deprecation.cloud_removal_retried")
    assert retried.after["cloud_already_gone"] == [
        f"{first.zone.code} image {first.provider_image_id}"
    ]
    assert retried.after["cloud_removed"] == [f"{first.zone.code} snapshot {first.snapshot_id}"]


def test_images_already_gone_from_the_cloud_count_as_removed(
    cloud: Cloud, image: Image, monkeypatch
) -> None:
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "feed")
    version = version_with_images(image, "2026-11-01", zones=ZONES)
    deprecate_long_ago(image)
    told_before = AuditEntry.objects.filter(action="deprecation.marketplace_failed").count()

    assert deprecation.retire(image)

    states = set(version.local_images.values_list("state", flat=True))
    assert states == {LocalImageState.DELETED}
    entry = retired_entry(image)
    assert len(entry.after["cloud_already_gone"]) == len(ZONES)
    assert entry.after["cloud_removed"] == [] and entry.after["cloud_failed"] == []
    # The feed-only backend has nothing to remove: retiring tells it nothing that can fail.
    assert entry.after["marketplace"] == "told"
    failed = AuditEntry.objects.filter(action="deprecation.marketplace_failed").count()
    assert failed == told_before


def test_an_unconfigured_cloud_retires_the_image_and_leaves_every_zone_marked(
    image: Image, monkeypatch
) -> None:
    for name in (
        "SCW_ACCESS_KEY",
        "SCW_SECRET_KEY",
        "SCW_DEFAULT_PROJECT_ID",
        "SCW_API_URL",
        "SCW_CONFIG_PATH",
        "SCW_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "feed")
    version = version_with_images(image, "2026-11-01", zones=ZONES)
    deprecate_long_ago(image)

    assert deprecation.retire(image)

    image.refresh_from_db()
    assert image.state == ImageState.RETIRED
    for local in version.local_images.all():
        assert local.state == LocalImageState.DELETE_FAILED
        assert "The cloud is not configured" in local.error
    assert len(retired_entry(image).after["cloud_failed"]) == len(ZONES)
    status = deprecation.cloud_status(image)
    assert status is not None and status.leftover_zones == sorted(ZONES)
    assert ImageVersion.objects.get(pk=version.pk).state == VersionState.RETIRED
