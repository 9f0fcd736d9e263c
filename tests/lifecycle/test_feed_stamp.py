"""The feed's change stamp: database triggers count every change to the rows the feed shows,
whoever writes them, and the ETag costs one query."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Image, LocalImage
from lifecycle import feed, feed_stamp
from lifecycle.models import FeedChange
from tests.catalog.factories import os_image
from tests.lifecycle.test_feed import FEED, logged_in, released

pytestmark = pytest.mark.django_db


def test_every_table_the_feed_reads_has_its_triggers_after_migrate() -> None:
    tables = feed_stamp._watched(feed._FINGERPRINT_COLUMNS)
    # The feed's own tables and the advisories section's.
    assert {"catalog_image", "catalog_localimage", "lifecycle_release"} <= set(tables)
    assert "advisories_exposure" in tables
    assert "provider_image_id" in tables["catalog_localimage"]
    with connection.cursor() as cursor:
        existing = {name for name, _ in feed_stamp._existing(cursor, connection.vendor)}
    for table, names in feed_stamp._names(tables, connection.vendor).items():
        assert set(names) <= existing, table
    assert feed_stamp.stamp() is not None


def test_a_raw_sql_update_changes_the_etag(viewer) -> None:
    """The one writer no Python code can see: the database's triggers still count it."""
    image = os_image("debian_bookworm")
    released(image, "2026-08-01", 90)
    client = Client()
    client.force_login(viewer)
    first = client.get(FEED)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE catalog_image SET name = %s WHERE id = %s", ["Debian 12", image.pk])
    second = client.get(FEED, HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 200 and second["ETag"] != first["ETag"]
    assert second.json()["images"][0]["name"] == "Debian 12"


def test_a_304_reads_one_row_of_the_stamp_and_nothing_of_the_catalogue(viewer) -> None:
    image = os_image("debian_bookworm")
    released(image, "2026-08-01", 90)
    client = logged_in(viewer)
    etag = client.get(FEED)["ETag"]
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(FEED, HTTP_IF_NONE_MATCH=etag).status_code == 304
    feed_queries = [q["sql"] for q in ctx.captured_queries if "feedchange" in q["sql"]]
    assert len(feed_queries) == 1
    assert not any('"catalog_' in q["sql"] for q in ctx.captured_queries)


@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="PostgreSQL's triggers fire once per statement"
)
def test_an_update_of_columns_the_feed_does_not_show_leaves_the_etag(viewer) -> None:
    image = os_image("debian_bookworm")
    version = released(image, "2026-08-01", 90)
    client = logged_in(viewer)
    first = client.get(FEED)
    LocalImage.objects.filter(version=version).update(error="a note the feed never shows")
    Image.objects.filter(pk=image.pk).update(name=image.name)  # the same value
    assert client.get(FEED, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304


def test_without_its_triggers_the_etag_reads_every_column_and_still_changes(viewer) -> None:
    image = os_image("debian_bookworm")
    version = released(image, "2026-08-01", 90)
    client = logged_in(viewer)
    name = feed_stamp._names(feed_stamp._watched(feed._FINGERPRINT_COLUMNS), connection.vendor)[
        "catalog_localimage"
    ][0]
    on = "" if connection.vendor == "sqlite" else " ON catalog_localimage"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {connection.ops.quote_name(name)}{on}")
    assert feed_stamp.stamp() is None
    first = client.get(FEED)
    LocalImage.objects.filter(version=version).delete()  # no trigger counts it now
    with CaptureQueriesContext(connection) as ctx:
        second = client.get(FEED, HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 200 and second["ETag"] != first["ETag"]
    assert any("provider_image_id" in q["sql"] for q in ctx.captured_queries)
    feed_stamp.install()  # as the next migrate does
    assert feed_stamp.stamp() is not None


def test_folding_the_change_rows_keeps_their_sum_and_misses_no_change(viewer) -> None:
    image = os_image("debian_bookworm")
    released(image, "2026-08-01", 90)
    before = sum(FeedChange.objects.values_list("changes", flat=True))
    assert FeedChange.objects.count() > 1
    newest = FeedChange.objects.order_by("-id").values_list("id", flat=True).first()
    assert newest is not None
    feed_stamp.fold(newest)
    assert FeedChange.objects.count() == 1
    assert FeedChange.objects.get().changes == before
    client = logged_in(viewer)
    first = client.get(FEED)
    Image.objects.filter(pk=image.pk).update(state="deprecated")
    assert client.get(FEED, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200


def test_the_stamp_folds_its_rows_once_they_pile_up(monkeypatch) -> None:
    monkeypatch.setattr(feed_stamp, "FOLD_AFTER", 3)
    for n in range(5):
        os_image(f"distro_{n}")
    total = sum(FeedChange.objects.values_list("changes", flat=True))
    stamp = feed_stamp.stamp()
    assert stamp is not None and stamp.startswith(f"{total}-")
    assert FeedChange.objects.count() == 1
    assert FeedChange.objects.get().changes == total


@pytest.mark.parametrize("name", ["2026-08-01", "2026 08+01:x@é", "v1.2~rc(3)"])
def test_sbom_links_are_the_paths_reverse_gives(name: str) -> None:
    links = feed._SbomLinks()
    version = {"arch": "x86_64", "name": name}
    assert links("debian_bookworm", version) == {
        "spdx": reverse("catalog:version_spdx", args=["debian_bookworm", "x86_64", name]),
        "cyclonedx": reverse("catalog:version_cyclonedx", args=["debian_bookworm", "x86_64", name]),
    }


def test_building_the_feed_leaves_the_garbage_collector_as_it_was(monkeypatch) -> None:
    import gc

    released(os_image("debian_bookworm"), "2026-08-01", 90)
    paused: list[bool] = []
    build = feed.build_feed

    def watched_build(*args, **kwargs):
        paused.append(not gc.isenabled())
        return build(*args, **kwargs)

    monkeypatch.setattr(feed, "build_feed", watched_build)
    monkeypatch.setattr(feed, "_last_built", None)
    assert gc.isenabled()
    assert feed.document("etag-1")
    assert paused == [True] and gc.isenabled()
    gc.disable()
    try:
        feed.document("etag-2")
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()

    def failing_build(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(feed, "build_feed", failing_build)
    with pytest.raises(RuntimeError):
        feed.document("etag-3")
    assert gc.isenabled()
