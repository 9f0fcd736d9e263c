"""The catalogue overview: badges, filters kept in the URL, constant query count."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import overview
from catalog.choices import ImageState
from catalog.models import ImageVersion
from tests.catalog.factories import instantapp, os_image

TODAY = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen():
    with time_machine.travel(TODAY, tick=False):
        yield


def _labels_with_badge(response, badge: str) -> set[str]:
    return {row.image.label for row in response.context["rows"] if badge in row.badges}


def test_it_badges_past_eol_soon_and_stale_images(client, viewer, frozen) -> None:
    os_image("ubuntu_focal", eol=dt.date(2025, 5, 31))
    os_image("fedora_43", eol=dt.date(2026, 12, 9))
    noble = os_image("ubuntu_noble", eol=dt.date(2029, 5, 31))
    ImageVersion.objects.create(
        image=noble, name="2026-07-01", released_at=timezone.now() - dt.timedelta(days=120)
    )
    client.force_login(viewer)
    response = client.get("/images/")
    assert _labels_with_badge(response, "past_eol") == {"ubuntu_focal"}
    assert _labels_with_badge(response, "eol_soon") == {"fedora_43"}
    assert _labels_with_badge(response, "stale") == {"ubuntu_noble"}
    assert b"13 days" in response.content  # fedora_43's countdown


def test_stale_follows_the_refresh_rule_never_released_counts_from_its_latest_build(
    client, viewer, frozen
) -> None:
    now = timezone.now()
    built_long_ago = os_image("debian_built")
    ImageVersion.objects.create(
        image=built_long_ago, name="2026-08-18", created_at=now - dt.timedelta(days=100)
    )
    built_lately = os_image("debian_recent")
    ImageVersion.objects.create(
        image=built_lately, name="2026-11-16", created_at=now - dt.timedelta(days=10)
    )
    os_image("debian_never_built")
    released_lately = os_image("ubuntu_noble")
    ImageVersion.objects.create(
        image=released_lately,
        name="2026-06-01",
        created_at=now - dt.timedelta(days=178),
        released_at=now - dt.timedelta(days=30),
    )
    for label, state in [
        ("debian_buster", ImageState.DEPRECATED),
        ("centos_7", ImageState.RETIRED),
    ]:
        gone = os_image(label)
        gone.state = state
        gone.save()
        ImageVersion.objects.create(
            image=gone,
            name="2026-01-01",
            created_at=now - dt.timedelta(days=300),
            released_at=now - dt.timedelta(days=300),
        )
    client.force_login(viewer)

    response = client.get("/images/")
    assert _labels_with_badge(response, "stale") == {"debian_built"}
    assert _labels_with_badge(response, "deprecated") == {"debian_buster", "centos_7"}
    filtered = client.get("/images/?badge=stale")
    assert [row.image.label for row in filtered.context["rows"]] == ["debian_built"]


def test_an_image_is_stale_from_the_day_its_refresh_was_due(client, viewer, frozen, settings):
    settings.REFRESH_DAYS = 90
    now = timezone.now()
    for label, days in [("due_today", 90), ("due_tomorrow", 89)]:
        image = os_image(label)
        ImageVersion.objects.create(
            image=image, name="v", created_at=now - dt.timedelta(days=days, hours=11)
        )
    client.force_login(viewer)
    assert _labels_with_badge(client.get("/images/"), "stale") == {"due_today"}
    rows = client.get("/images/?badge=stale").context["rows"]
    assert [row.image.label for row in rows] == ["due_today"]


def test_the_overview_says_how_long_ago_an_image_was_released(client, viewer, frozen) -> None:
    now = timezone.now()
    noble = os_image("ubuntu_noble")
    ImageVersion.objects.create(
        image=noble,
        name="2026-11-01",
        created_at=now - dt.timedelta(days=26),
        released_at=now - dt.timedelta(days=25, hours=3),
    )
    unreleased = os_image("debian_trixie")
    ImageVersion.objects.create(image=unreleased, name="2026-11-20")
    client.force_login(viewer)
    response = client.get("/images/")
    body = response.content.decode()
    rows = {row.image.label: row for row in response.context["rows"]}
    assert rows["ubuntu_noble"].days_since_release == 25
    assert rows["debian_trixie"].days_since_release is None
    noble_row = body[body.index('data-label="ubuntu_noble"') :].split("</tr>", 1)[0]
    trixie_row = body[body.index('data-label="debian_trixie"') :].split("</tr>", 1)[0]
    assert "released 25 d ago" in noble_row
    assert "released" not in trixie_row and "0 days old" in trixie_row


def test_an_instantapp_shows_its_base_images_eol(client, viewer, frozen) -> None:
    focal = os_image("ubuntu_focal", eol=dt.date(2025, 5, 31))
    instantapp("wordpress", focal)
    client.force_login(viewer)
    response = client.get("/images/")
    assert _labels_with_badge(response, "past_eol") == {"ubuntu_focal", "wordpress"}


def test_a_deprecated_image_gets_the_deprecated_badge(client, viewer, frozen) -> None:
    image = os_image("debian_buster", eol=dt.date(2024, 6, 30))
    image.state = ImageState.DEPRECATED
    image.save()
    client.force_login(viewer)
    response = client.get("/images/?badge=deprecated")
    assert [row.image.label for row in response.context["rows"]] == ["debian_buster"]


def test_filters_and_sort_come_from_the_url(client, viewer, frozen) -> None:
    os_image("ubuntu_focal", eol=dt.date(2025, 5, 31))
    os_image("ubuntu_noble", eol=dt.date(2029, 5, 31))
    os_image("debian_trixie", eol=dt.date(2028, 8, 9))
    client.force_login(viewer)
    response = client.get("/images/?q=ubuntu&sort=-eol")
    assert [row.image.label for row in response.context["rows"]] == ["ubuntu_noble", "ubuntu_focal"]
    assert response.context["filters"].q == "ubuntu"
    response = client.get("/images/?badge=past_eol")
    assert [row.image.label for row in response.context["rows"]] == ["ubuntu_focal"]


def test_an_htmx_request_gets_only_the_table(client, viewer, frozen) -> None:
    os_image("ubuntu_noble", eol=dt.date(2029, 5, 31))
    client.force_login(viewer)
    response = client.get("/images/?q=noble", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert 'id="catalogue-table"' in body
    assert "<html" not in body


def test_unknown_filter_values_are_ignored(client, viewer) -> None:
    client.force_login(viewer)
    response = client.get("/images/?kind=spaceship&badge=nope&sort=drop+table")
    assert response.status_code == 200
    assert response.context["filters"].sort == "label"


def test_the_overview_costs_the_same_queries_for_ten_or_three_hundred_images(
    client, viewer, frozen
) -> None:
    client.force_login(viewer)
    base = os_image("ubuntu_noble", eol=dt.date(2029, 5, 31))

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/images/").status_code == 200
        return len(ctx.captured_queries)

    for i in range(10):
        os_image(f"os_{i}", eol=dt.date(2027, 1, 1))
    small = count()
    for i in range(10, 300):
        image = os_image(f"os_{i}", eol=dt.date(2027, 1, 1))
        ImageVersion.objects.create(image=image, name="2026-11-01")
        if i % 3 == 0:
            instantapp(f"app_{i}", base)
    assert count() == small


def _next_url(body: str) -> str | None:
    marker = 'rel="next"'
    if marker not in body:
        return None
    link = body[: body.index(marker)].rsplit("<a ", 1)[1]
    return link.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def test_every_matching_row_is_reached_page_by_page_with_the_filters_kept(
    client, viewer, frozen
) -> None:
    for i in range(overview.PAGE_SIZE * 2 + 7):
        os_image(f"ubuntu_{i:03d}", eol=dt.date(2027, 1, 1) + dt.timedelta(days=i))
    for i in range(20):
        os_image(f"debian_{i:03d}")
    client.force_login(viewer)

    seen: list[str] = []
    url: str | None = "/images/?q=ubuntu&sort=-eol"
    pages = 0
    while url:
        response = client.get(url if url.startswith("/") else "/images/" + url)
        assert response.status_code == 200
        seen += [row.image.label for row in response.context["rows"]]
        assert len(response.context["rows"]) <= overview.PAGE_SIZE
        body = response.content.decode()
        assert f"{overview.PAGE_SIZE * 2 + 7} images" in body
        url = _next_url(body)
        if url:
            assert "q=ubuntu" in url and "sort=-eol" in url
        pages += 1
    assert pages == 3
    expected = [f"ubuntu_{i:03d}" for i in reversed(range(overview.PAGE_SIZE * 2 + 7))]
    assert seen == expected


def test_an_htmx_page_request_gets_only_the_table_of_that_page(client, viewer, frozen) -> None:
    for i in range(overview.PAGE_SIZE + 3):
        os_image(f"os_{i:03d}")
    client.force_login(viewer)
    response = client.get("/images/?page=2", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<html" not in body and 'id="catalogue-table"' in body
    labels = [part.split('"', 1)[0] for part in body.split('data-label="')[1:]]
    assert labels == [f"os_{i:03d}" for i in range(overview.PAGE_SIZE, overview.PAGE_SIZE + 3)]
    assert 'rel="prev"' in body and 'rel="next"' not in body


@pytest.mark.parametrize("query", ["", "?sort=name", "?sort=-eol", "?sort=age", "?badge=stale"])
def test_each_sort_and_filter_costs_a_bounded_number_of_queries_at_two_sizes(
    client, manager, frozen, django_assert_max_num_queries, query
) -> None:
    client.force_login(manager)
    base = os_image("ubuntu_noble", eol=dt.date(2029, 5, 31))

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/images/" + query)
            assert response.status_code == 200
        return len(ctx.captured_queries)

    for i in range(5):
        os_image(f"os_{i}", eol=dt.date(2027, 1, 1))
    small = count()
    for i in range(5, 160):
        image = os_image(f"os_{i}", eol=dt.date(2027, 1, 1))
        ImageVersion.objects.create(image=image, name="2026-01-01")
        if i % 3 == 0:
            instantapp(f"app_{i}", base)
    with django_assert_max_num_queries(15):
        assert count() == small
