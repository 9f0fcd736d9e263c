"""Adopting the Marketplace that exists already (lifecycle.adoption, manage.py
adopt_marketplace, the Adoption page): read through the real Scaleway SDK from a real
localcloud whose Marketplace is seeded through its operator API, as a provider's Marketplace
stands before the factory."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from catalog.choices import ImageState, LocalImageState, Origin, VersionState
from catalog.models import AuditEntry, ImageVersion, LocalImage, Zone
from cloud import clients
from cloud.retries import CloudError
from lifecycle import adoption, deprecation, releases
from lifecycle.customers import import_customers
from lifecycle.feed import build_feed
from lifecycle.models import LabelDecision, MarketplaceLabel, Release, Usage
from lifecycle.usage import refresh_usage
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle import enable_zones
from tests.lifecycle.test_customers import GOOD, P1, _cloud_image

pytestmark = pytest.mark.django_db

OP = "/localcloud/v1/marketplace"


def op(cloud: Cloud, method: str, path: str, body: dict | None = None) -> dict:
    response = requests.request(method, f"{cloud.url}{OP}{path}", json=body, timeout=10)
    assert response.status_code < 400, response.text
    return response.json() if response.content else {}


def local(zone: str, type_: str = "instance_local", arch: str = "x86_64") -> dict:
    return {
        "instance_image_id": str(uuid.uuid4()),
        "zone": zone,
        "arch": arch,
        "type": type_,
        "compatible_commercial_types": ["DEV1-S"] if type_ == "instance_local" else ["PLAY2-PICO"],
    }


def seed(cloud: Cloud, label: str, versions: dict[str, list[dict]], **image: object) -> None:
    """A Marketplace image with `versions` (name -> local images), published in that order."""
    op(cloud, "PUT", f"/images/{label}", {"name": label.title(), "categories": ["distribution"]})
    if image:
        op(cloud, "PUT", f"/images/{label}", dict(image))
    for name, locals_ in versions.items():
        created = op(cloud, "POST", f"/images/{label}/versions", {"name": name})
        if locals_:
            op(cloud, "POST", f"/versions/{created['id']}/local-images", {"local_images": locals_})


def rows() -> dict[str, list]:
    """Everything adoption may write, as comparable values."""
    return {
        "versions": list(
            ImageVersion.objects.order_by("pk").values_list(
                "pk", "image__label", "arch", "name", "state", "origin", "released_at"
            )
        ),
        "local_images": list(
            LocalImage.objects.order_by("pk").values_list(
                "pk", "version_id", "zone__code", "storage_type", "provider_image_id", "state"
            )
        ),
        "releases": list(
            Release.objects.order_by("pk").values_list(
                "pk", "version_id", "released_at", "marketplace_version_id", "withdrawn_at"
            )
        ),
        "labels": list(MarketplaceLabel.objects.order_by("pk").values()),
        "zones": list(Zone.objects.order_by("pk").values_list("code", "enabled")),
        "audit": list(AuditEntry.objects.order_by("pk").values_list("pk", "action")),
    }


@pytest.fixture
def focal(cloud: Cloud):
    enable_zones("fr-par-1", "fr-par-2")
    image = os_image("ubuntu_focal")
    seed(
        cloud,
        "ubuntu_focal",
        {
            "2024-01-05": [local("fr-par-1"), local("fr-par-2"), local("fr-par-1", "instance_sbs")],
            "2024-06-20": [
                local("fr-par-1"),
                local("fr-par-2"),
                local("fr-par-1", "instance_sbs"),
                local("fr-par-1", arch="arm64"),
            ],
        },
    )
    return image


def test_it_adopts_versions_and_local_images_and_a_second_run_changes_nothing(
    focal, admin_user
) -> None:
    report = adoption.adopt(admin_user)
    assert sorted(report.adopted) == [
        "ubuntu_focal 2024-01-05 (x86_64)",
        "ubuntu_focal 2024-06-20 (arm64)",
        "ubuntu_focal 2024-06-20 (x86_64)",
    ]
    assert report.local_images == 7 and not report.problems
    versions = ImageVersion.objects.filter(image=focal)
    assert {v.origin for v in versions} == {Origin.ADOPTED}
    assert {v.state for v in versions} == {VersionState.RELEASED}
    june = versions.get(name="2024-06-20", arch="x86_64")
    assert sorted(
        june.local_images.values_list("zone__code", "storage_type", "state", "origin")
    ) == [
        ("fr-par-1", "instance_local", LocalImageState.AVAILABLE, Origin.ADOPTED),
        ("fr-par-1", "instance_sbs", LocalImageState.AVAILABLE, Origin.ADOPTED),
        ("fr-par-2", "instance_local", LocalImageState.AVAILABLE, Origin.ADOPTED),
    ]
    # The latest published is current, as the Marketplace resolves the label.
    assert releases.current_release(focal).version == june
    actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert actions.count(adoption.VERSION_ACTION) == 3
    assert actions.count(adoption.ADOPTION_ACTION) == 1

    before = rows()
    again = adoption.adopt(admin_user)
    assert not again.changed and again.adopted == [] and again.local_images == 0
    assert "nothing new to adopt" in again.summary()
    assert rows() == before


def test_adopted_versions_are_in_the_feed_and_cannot_be_tested_or_released_again(
    focal, admin_user, manager
) -> None:
    adoption.adopt(admin_user)
    document = build_feed()
    (entry,) = [i for i in document["images"] if i["label"] == "ubuntu_focal"]
    assert entry["current_version"]["name"] == "2024-06-20"
    assert {li["type"] for li in entry["current_version"]["local_images"]} == {
        "instance_local",
        "instance_sbs",
    }
    assert [v["name"] for v in entry["versions"]] == ["2024-06-20", "2024-01-05"]

    january = ImageVersion.objects.get(image=focal, name="2024-01-05")
    verdict = releases.readiness(january)
    assert not verdict.ready and not verdict.overridable and "not built here" in verdict.reason
    with pytest.raises(releases.ReleaseError, match="not built here"):
        releases.release(january, manager, override_reason="I insist")

    client = Client()
    client.force_login(manager)
    response = client.post(
        reverse("builds:test_rerun", args=[january.pk]), {"zone": "fr-par-1"}, follow=True
    )
    assert "not built here" in response.content.decode()
    assert not january.test_runs.exists()
    page = client.get(january.get_absolute_url()).content.decode()
    assert "Adopted (not built here)" in page
    matrix = client.get(reverse("builds:test_matrix", args=[january.pk])).content.decode()
    assert 'data-testid="matrix-adopted"' in matrix and "rerun-zone" not in matrix


def test_a_label_with_no_image_is_listed_then_mapped_or_ignored(
    cloud: Cloud, admin_user, manager
) -> None:
    enable_zones("fr-par-1")
    jammy = os_image("ubuntu_jammy")
    seed(cloud, "ubuntu_jammy_legacy", {"2023-04-01": [local("fr-par-1")]})
    seed(cloud, "centos_7", {"2020-01-01": [local("fr-par-1")]})

    report = adoption.adopt(admin_user)
    assert sorted(report.labels_found) == ["centos_7", "ubuntu_jammy_legacy"]
    assert report.adopted == []
    legacy = MarketplaceLabel.objects.get(label="ubuntu_jammy_legacy")
    assert legacy.decision == LabelDecision.PENDING and legacy.version_count == 1
    before = rows()
    adoption.adopt(admin_user)
    assert rows() == before  # listed once

    client = Client()
    client.force_login(manager)
    page = client.get(reverse("lifecycle:adoption")).content.decode()
    assert "ubuntu_jammy_legacy" in page and "centos_7" in page
    decide = reverse("lifecycle:adoption_label", args=[legacy.pk])
    client.post(decide, {"action": "map", "image": "ubuntu_jammy"})
    legacy.refresh_from_db()
    assert legacy.decision == LabelDecision.MAPPED and legacy.image == jammy
    assert legacy.decided_by == manager
    (adopted,) = ImageVersion.objects.filter(image=jammy)
    assert adopted.name == "2023-04-01" and adopted.is_adopted

    # A label whose image was added meanwhile leaves the list and is adopted.
    seed(cloud, "rocky_9", {"2024-02-02": [local("fr-par-1")]})
    adoption.adopt(admin_user)
    assert MarketplaceLabel.objects.filter(label="rocky_9").exists()
    rocky = os_image("rocky_9")
    assert adoption.adopt(admin_user).adopted == ["rocky_9 2024-02-02 (x86_64)"]
    assert not MarketplaceLabel.objects.filter(label="rocky_9").exists()
    assert rocky.versions.get().is_adopted

    centos = MarketplaceLabel.objects.get(label="centos_7")
    client.post(reverse("lifecycle:adoption_label", args=[centos.pk]), {"action": "ignore"})
    centos.refresh_from_db()
    assert centos.decision == LabelDecision.IGNORED
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {adoption.LABEL_MAPPED_ACTION, adoption.LABEL_IGNORED_ACTION} <= actions
    before = rows()
    assert not adoption.adopt(admin_user).changed
    assert rows() == before


def test_a_viewer_can_neither_adopt_nor_decide_and_a_manager_cannot_adopt(
    cloud: Cloud, viewer, manager
) -> None:
    seed(cloud, "centos_7", {"2020-01-01": [local("fr-par-1")]})
    listed = MarketplaceLabel.objects.create(label="centos_7", marketplace_image_id="x")
    client = Client()
    client.force_login(viewer)
    assert client.get(reverse("lifecycle:adoption")).status_code == 200
    run = reverse("lifecycle:adoption_run")
    assert client.post(run, {"confirm": "yes"}).status_code == 403
    decide = reverse("lifecycle:adoption_label", args=[listed.pk])
    assert client.post(decide, {"action": "ignore"}).status_code == 403
    client.force_login(manager)
    assert client.post(run, {"confirm": "yes"}).status_code == 403
    assert not ImageVersion.objects.exists()


def test_the_button_asks_for_a_confirmation_then_adopts_and_needs_a_csrf_token(
    focal, admin_user
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    run = reverse("lifecycle:adoption_run")
    confirm = client.get(run)
    assert confirm.status_code == 200 and "Yes, adopt the Marketplace" in confirm.content.decode()
    assert not ImageVersion.objects.exists()
    assert client.post(run, {"confirm": "yes"}).status_code == 403  # no CSRF token
    assert not ImageVersion.objects.exists()
    token = confirm.cookies["csrftoken"].value
    done = client.post(run, {"confirm": "yes", "csrfmiddlewaretoken": token}, follow=True)
    assert "adopted 3 version(s)" in done.content.decode()
    entry = AuditEntry.objects.get(action=adoption.ADOPTION_ACTION)
    assert entry.actor == admin_user


def test_what_cannot_be_adopted_is_said_and_the_rest_is_adopted(cloud: Cloud, admin_user) -> None:
    enable_zones("fr-par-1")
    os_image("debian_bullseye")
    seed(
        cloud,
        "debian_bullseye",
        {
            "2022-01-01": [],  # no local image
            "2022-02-01": [local("fr-par-1", "unknown_type")],
            "2022-03-01": [local("fr-par-1", "unknown_type"), local("fr-par-1")],
        },
    )
    report = adoption.adopt(admin_user)
    assert report.adopted == ["debian_bullseye 2022-03-01 (x86_64)"]
    problems = " | ".join(report.problems)
    assert "2022-01-01: no local image; nothing to adopt" in problems
    assert "unknown storage type 'unknown_type'" in problems
    assert "2022-02-01 (x86_64): no local image to adopt" in problems
    (kept,) = LocalImage.objects.all()
    assert kept.storage_type == "instance_local"
    before = rows()
    assert not adoption.adopt(admin_user).changed
    assert rows() == before


def test_a_label_of_a_retired_image_is_not_adopted(cloud: Cloud, admin_user) -> None:
    enable_zones("fr-par-1")
    image = os_image("ubuntu_xenial")
    image.state, image.retired_at = ImageState.RETIRED, dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    image.save()
    seed(cloud, "ubuntu_xenial", {"2019-01-01": [local("fr-par-1")]})
    report = adoption.adopt(admin_user)
    assert not report.changed
    assert "ubuntu_xenial was retired on 2025-01-01" in report.problems[0]
    assert not ImageVersion.objects.exists() and not AuditEntry.objects.exists()


def test_a_zone_the_factory_does_not_know_is_added_disabled(cloud: Cloud, admin_user) -> None:
    enable_zones("fr-par-1")
    os_image("ubuntu_noble")
    seed(cloud, "ubuntu_noble", {"2024-05-01": [local("fr-par-1"), local("nl-ams-1")]})
    report = adoption.adopt(admin_user)
    assert report.zones_added == ["nl-ams-1"]
    assert Zone.objects.get(code="nl-ams-1").enabled is False
    assert LocalImage.objects.filter(zone__code="nl-ams-1", origin=Origin.ADOPTED).exists()


def test_the_factorys_own_releases_are_not_adopted(focal, admin_user) -> None:
    # A version the factory released: its Release holds the Marketplace version id.
    adoption.adopt(admin_user)
    june = ImageVersion.objects.get(image=focal, name="2024-06-20", arch="x86_64")
    ImageVersion.objects.filter(pk=june.pk).update(origin=Origin.BUILT)
    LocalImage.objects.filter(version=june).update(origin=Origin.BUILT)
    before = rows()
    assert not adoption.adopt(admin_user).changed
    assert rows() == before


def test_adopted_versions_retire_with_their_image(focal, admin_user, settings) -> None:
    adoption.adopt(admin_user)
    focal.state = ImageState.DEPRECATED
    focal.deprecated_at = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    focal.save()
    assert deprecation.retire(focal)
    assert set(ImageVersion.objects.filter(image=focal).values_list("state", flat=True)) == {
        VersionState.RETIRED
    }
    # Its instance images never existed in this localcloud: already gone counts as deleted.
    assert set(LocalImage.objects.values_list("state", flat=True)) == {LocalImageState.DELETED}
    # The Marketplace no longer offers its versions; adopting again changes nothing and has
    # nothing to report.
    before = rows()
    again = adoption.adopt(admin_user)
    assert not again.changed and again.problems == []
    assert rows() == before


def test_customers_servers_from_an_adopted_image_count_as_its_usage(
    cloud: Cloud, admin_user
) -> None:
    # An Instance image in localcloud, offered in the Marketplace before the factory existed,
    # and a customer's server from it.
    enable_zones("fr-par-1")
    image = os_image("debian_bookworm")
    provider_image = _cloud_image()
    seed(
        cloud,
        "debian_bookworm",
        {"2023-07-01": [{**local("fr-par-1"), "instance_image_id": provider_image}]},
    )
    import_customers(GOOD)
    server = (
        clients.instance_api()
        .create_server(zone="fr-par-1", commercial_type="DEV1-S", image=provider_image, project=P1)
        .server
    )
    adoption.adopt(admin_user)
    refresh = refresh_usage()
    assert refresh.ok, refresh.message
    (usage,) = Usage.objects.all()
    adopted = ImageVersion.objects.get(image=image, name="2023-07-01")
    assert (usage.server_id, usage.image, usage.version) == (server.id, image, adopted)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_unreachable_cloud_is_a_clear_error_and_records_nothing(
    focal, admin_user, monkeypatch, settings
) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 1
    monkeypatch.setenv("SCW_API_URL", closed_port_url())
    with pytest.raises(CloudError, match="list Marketplace images: cannot reach the API"):
        adoption.adopt(admin_user)
    with pytest.raises(CommandError, match="cannot be read; nothing was recorded"):
        call_command("adopt_marketplace")
    assert not ImageVersion.objects.exists() and not AuditEntry.objects.exists()


def test_a_failure_half_way_through_the_reading_records_nothing(
    focal, cloud: Cloud, admin_user
) -> None:
    # The images and the first image's versions are read, then its local images fail.
    cloud.fault(operation="GET /marketplace/v2/local-images", status=500, count=1)
    with pytest.raises(CloudError):
        adoption.adopt(admin_user)
    assert not ImageVersion.objects.exists() and not MarketplaceLabel.objects.exists()
    assert not AuditEntry.objects.exists()


def test_the_command_prints_what_it_adopted_and_reads_without_credentials(
    focal, monkeypatch
) -> None:
    # Scaleway's Marketplace is public: no keys needed to read it.
    for name in ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    out = StringIO()
    call_command("adopt_marketplace", stdout=out)
    text = out.getvalue()
    assert "ADOPTED ubuntu_focal 2024-01-05 (x86_64)" in text
    assert "adopted 3 version(s), 7 local image(s)" in text
    again = StringIO()
    call_command("adopt_marketplace", stdout=again)
    assert "nothing new to adopt" in again.getvalue()
    assert AuditEntry.objects.filter(actor_name="system").count() == 4


def test_a_marketplace_version_name_becomes_a_valid_version_name() -> None:
    assert adoption.version_name("2024-01-05", None) == "2024-01-05"
    assert adoption.version_name("Ubuntu 22.04 (Jammy)", None) == "Ubuntu-22-04-Jammy"
    when = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    assert adoption.version_name("***", when) == "2024-03-01"
