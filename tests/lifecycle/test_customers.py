"""Customers from a CSV upload (all or nothing) and usage from the cloud's usage source."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients
from lifecycle.customers import import_customers
from lifecycle.models import Customer, Usage, UsageRefresh
from lifecycle.usage import refresh_usage
from tests.catalog import factories

pytestmark = pytest.mark.django_db

P1 = "11111111-1111-1111-1111-111111111111"
P2 = "22222222-2222-2222-2222-222222222222"
ORG = "33333333-3333-3333-3333-333333333333"
GOOD = (
    "project_id,organization_id,name,email,language\n"
    f"{P1},,Alpha,alpha@example.com,fr\n"
    f",{ORG},Beta,beta@example.com,\n"
)


def test_a_valid_csv_imports_every_row_and_updates_known_customers() -> None:
    result = import_customers(GOOD.encode())
    assert (result.created, result.updated, result.errors) == (2, 0, [])
    again = import_customers(GOOD.replace("Alpha", "Alpha SAS").encode())
    assert (again.created, again.updated) == (0, 2)
    alpha = Customer.objects.get(project_id=P1)
    assert (alpha.name, alpha.language, alpha.email_language) == ("Alpha SAS", "fr", "fr")
    assert Customer.objects.get(organization_id=ORG).email_language == "en"


def test_a_csv_with_bad_rows_imports_nothing_and_reports_each_bad_line(
    client: Client, release_manager
) -> None:
    import_customers(GOOD)
    bad = (
        "project_id,organization_id,name,email,language\n"
        f"{P2},,Gamma,gamma@example.com,en\n"
        ",,Nobody,nobody@example.com,en\n"
        f"{P1},,Alpha changed,not-an-email,de\n"
        f"{P2},,Gamma again,gamma2@example.com,\n"
    )
    client.force_login(release_manager)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/lifecycle/customers/import/",
        {"file": SimpleUploadedFile("customers.csv", bad.encode(), "text/csv")},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "Line 3: needs an organization_id or a project_id" in body
    assert "Line 4:" in body and "not a valid address" in body and "&#x27;de&#x27;" in body
    assert "Line 5: same project as line 2" in body
    assert "Line 2:" not in body
    # Nothing half-imported: the old data is untouched, Gamma is not there.
    assert sorted(Customer.objects.values_list("name", flat=True)) == ["Alpha", "Beta"]


def test_only_release_managers_import_customers(client: Client, manager) -> None:
    client.force_login(manager)
    assert client.get("/lifecycle/customers/").status_code == 403


def _cloud_image() -> str:
    """An image in localcloud, made the way publishing makes one (block snapshot)."""
    from scaleway.block.v1 import CreateVolumeRequestFromEmpty

    block = clients.block_api()
    volume = block.create_volume(
        name="root", perf_iops=5000, from_empty=CreateVolumeRequestFromEmpty(size=10 * 1000**3)
    )
    block.wait_for_volume(volume_id=volume.id)
    snapshot = block.create_snapshot(volume_id=volume.id, name="root-snap", public=False)
    block.wait_for_snapshot(snapshot_id=snapshot.id)
    return (
        clients.instance_api()
        .create_image(root_volume=snapshot.id, arch="x86_64", name="debian-bookworm")
        .image.id
    )


def test_usage_comes_from_localcloud_inventory_of_every_project(cloud) -> None:
    import_customers(GOOD.replace(f",{ORG},Beta", f"{P2},,Beta"))
    api = clients.instance_api()
    image = factories.os_image("debian_bookworm")
    version = ImageVersion.objects.create(image=image, name="2026-11-01")
    provider_image = _cloud_image()
    made = [
        api.create_server(
            zone="fr-par-1", commercial_type="DEV1-S", image=provider_image, project=project
        ).server
        for project in (P1, P2)
    ]
    zone = Zone.objects.create(code="fr-par-1", enabled=True)
    LocalImage.objects.create(version=version, zone=zone, provider_image_id=provider_image)
    # A server of a project that is not a customer is ignored.
    api.create_server(
        zone="fr-par-1",
        commercial_type="DEV1-S",
        image=provider_image,
        project="44444444-4444-4444-4444-444444444444",
    )
    refresh = refresh_usage()
    assert refresh.ok, refresh.message
    rows = Usage.objects.order_by("customer__name")
    assert [(u.customer.name, u.server_id, u.zone, u.version_id) for u in rows] == [
        ("Alpha", made[0].id, "fr-par-1", version.pk),
        ("Beta", made[1].id, "fr-par-1", version.pk),
    ]


def test_a_failed_refresh_keeps_the_last_known_usage(
    cloud, monkeypatch, client, release_manager
) -> None:
    import_customers(GOOD)
    image = factories.os_image("debian_bookworm")
    Usage.objects.create(
        customer=Customer.objects.get(project_id=P1), image=image, zone="fr-par-1", server_id="s1"
    )
    monkeypatch.setenv("SCW_API_URL", "http://127.0.0.1:9")  # nothing listens there
    refresh = refresh_usage()
    assert not refresh.ok and "last known usage is kept" in refresh.message
    assert Usage.objects.filter(server_id="s1").exists()
    assert UsageRefresh.objects.first() == refresh
    client.force_login(release_manager)
    assert "last known usage is kept" in client.get("/lifecycle/customers/").content.decode()
