"""The JSON catalogue feed: Marketplace-shaped content, ETag and 304, constant query count."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from catalog.choices import VersionState
from lifecycle.models import Release
from tests.catalog.factories import instantapp, os_image
from tests.lifecycle import version_with_images

pytestmark = pytest.mark.django_db

FEED = "/lifecycle/feed.json"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def released(image, name: str, days_ago: int, *, withdrawn: bool = False):
    version = version_with_images(
        image,
        name,
        state=VersionState.WITHDRAWN if withdrawn else VersionState.RELEASED,
        days_ago=days_ago,
        upstream_serial=f"serial-{name}",
    )
    at = version.created_at + dt.timedelta(hours=1)
    version.released_at = at
    version.save(update_fields=["released_at"])
    Release.objects.create(version=version, released_at=at, withdrawn_at=at if withdrawn else None)
    return version


def test_the_feed_lists_images_with_lifecycle_dates_current_and_earlier_versions(viewer) -> None:
    image = os_image("ubuntu_focal", eol=dt.date(2025, 5, 31))
    image.deprecation_date = dt.date(2025, 8, 29)
    image.save()
    old = released(image, "2026-05-01", 180)
    current = released(image, "2026-08-01", 90)
    withdrawn = released(image, "2026-11-01", 1, withdrawn=True)
    version_with_images(image, "2026-11-02", state=VersionState.TESTED)  # never released
    app = instantapp("wordpress", image)

    assert reverse("lifecycle:feed") == FEED
    response = logged_in(viewer).get(FEED)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    assert data["total_count"] == 2
    by_label = {i["label"]: i for i in data["images"]}
    focal = by_label["ubuntu_focal"]
    assert focal["kind"] == "os" and focal["category"] == "Distributions"
    assert focal["lifecycle"]["upstream_eol"] == "2025-05-31"
    assert focal["lifecycle"]["deprecation_date"] == "2025-08-29"
    assert focal["state"] == "active"
    assert focal["current_version"]["name"] == current.name
    assert focal["current_version"]["upstream_serial"] == "serial-2026-08-01"
    assert {li["zone"]: li["id"] for li in focal["current_version"]["local_images"]} == {
        li.zone.code: li.provider_image_id for li in current.local_images.all()
    }
    assert [v["name"] for v in focal["versions"]] == [withdrawn.name, old.name]
    assert focal["versions"][0]["state"] == "withdrawn" and focal["versions"][0]["withdrawn_at"]
    wordpress = by_label[app.label]
    assert wordpress["base_image"] == "ubuntu_focal"
    assert wordpress["lifecycle"]["upstream_eol"] == "2025-05-31"  # its base image's
    assert wordpress["current_version"] is None and wordpress["versions"] == []


def test_the_feed_answers_304_while_its_etag_matches_and_200_after_a_change(viewer) -> None:
    image = os_image("debian_bookworm")
    released(image, "2026-08-01", 90)
    client = logged_in(viewer)

    first = client.get(FEED)
    etag = first["ETag"]
    assert etag.startswith('"') and first.status_code == 200
    again = client.get(FEED, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert client.get(FEED, HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304

    released(image, "2026-11-01", 1)
    changed = client.get(FEED, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["images"][0]["current_version"]["name"] == "2026-11-01"


def test_the_feed_needs_a_login() -> None:
    response = Client().get(FEED)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_feed_makes_the_same_number_of_queries_for_many_images(
    viewer, django_assert_max_num_queries
) -> None:
    client = logged_in(viewer)
    for n in range(3):
        image = os_image(f"distro_{n}")
        released(image, "2026-08-01", 90)
        released(image, "2026-11-01", 1)
    with django_assert_max_num_queries(8) as few:
        client.get(FEED)
    for n in range(3, 40):
        image = os_image(f"distro_{n}")
        released(image, "2026-08-01", 90)
        released(image, "2026-11-01", 1)
        instantapp(f"app_{n}", image)
    with django_assert_max_num_queries(len(few.captured_queries)):
        data = client.get(FEED).json()
    assert data["total_count"] == 77
    assert all(i["current_version"] for i in data["images"] if i["kind"] == "os")
