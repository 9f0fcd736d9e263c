"""The JSON catalogue feed: Marketplace-shaped content, ETag and 304, constant query count."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.choices import LocalImageState, StorageType, VersionState
from catalog.models import Category, Image, ImageVersion, LocalImage, UpstreamLifecycle
from lifecycle.models import Release
from tests.catalog.factories import instantapp, os_image
from tests.lifecycle import version_with_images

pytestmark = pytest.mark.django_db

FEED = "/lifecycle/feed.json"
ROOT = Path(__file__).resolve().parents[2]


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


def test_each_local_image_shows_its_storage_type_as_the_marketplace_names_it(viewer) -> None:
    image = os_image("debian_bookworm")
    image.storage_types = [StorageType.LOCAL]
    image.save()
    version = released(image, "2026-08-01", 90)  # an instance_local image per zone
    image.storage_types = [StorageType.LOCAL, StorageType.SBS]
    image.save()
    sbs = {
        li.zone.code: LocalImage.objects.create(
            version=version,
            zone=li.zone,
            storage_type=StorageType.SBS,
            provider_image_id=f"sbs-{li.zone.code}",
            state=LocalImageState.AVAILABLE,
        )
        for li in version.local_images.select_related("zone")
    }
    data = logged_in(viewer).get(FEED).json()
    feed_image = data["images"][0]
    assert feed_image["storage_types"] == ["instance_local", "instance_sbs"]
    local_images = feed_image["current_version"]["local_images"]
    # By zone, then storage type; `type` as the Marketplace has it.
    assert [(li["zone"], li["type"]) for li in local_images] == [
        ("fr-par-1", "instance_local"),
        ("fr-par-1", "instance_sbs"),
        ("fr-par-2", "instance_local"),
        ("fr-par-2", "instance_sbs"),
    ]
    assert local_images[1]["id"] == sbs["fr-par-1"].provider_image_id
    assert (
        local_images[0]["id"]
        == version.local_images.get(
            zone__code="fr-par-1", storage_type=StorageType.LOCAL
        ).provider_image_id
    )


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


TOKEN = "feed-token-for-scripts-0123456789abcdef"
OTHER_TOKEN = "another-feed-token-0123456789abcdefghij"


def test_a_browser_without_a_login_or_token_is_sent_to_the_login_page(settings) -> None:
    settings.FEED_TOKENS = [TOKEN]
    response = Client().get(FEED, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_script_without_a_login_or_token_gets_a_401_not_the_feed(settings) -> None:
    settings.FEED_TOKENS = [TOKEN]
    os_image("debian_bookworm")
    response = Client().get(FEED, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert set(response.json()) == {"error"}
    assert "ETag" not in response and b"debian_bookworm" not in response.content


def test_a_script_reads_the_feed_with_a_bearer_token_and_its_etag(settings, caplog) -> None:
    settings.FEED_TOKENS = [OTHER_TOKEN, TOKEN]
    released(os_image("debian_bookworm"), "2026-08-01", 90)
    script = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}

    first = script.get(FEED, **auth)
    assert first.status_code == 200 and first.json()["images"][0]["label"] == "debian_bookworm"
    etag = first["ETag"]
    assert "Authorization" in first["Vary"]
    again = script.get(FEED, HTTP_IF_NONE_MATCH=etag, **auth)
    assert again.status_code == 304 and again["ETag"] == etag
    assert script.get(FEED, HTTP_IF_NONE_MATCH=etag).status_code == 401  # the ETag is no key
    assert TOKEN not in caplog.text


def test_a_wrong_token_gets_a_401(settings, caplog) -> None:
    settings.FEED_TOKENS = [TOKEN]
    for wrong in [TOKEN[:-1], TOKEN + "x", "x" * len(TOKEN)]:
        response = Client().get(FEED, HTTP_AUTHORIZATION=f"Bearer {wrong}")
        assert response.status_code == 401 and "error" in response.json()
        assert 'error="invalid_token"' in response["WWW-Authenticate"]
        assert wrong not in caplog.text
    basic = Client().get(FEED, HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    assert basic.status_code == 401


def test_no_feed_tokens_means_tokens_are_off(settings) -> None:
    settings.FEED_TOKENS = []
    for header in ["Bearer ", "Bearer", f"Bearer {TOKEN}"]:
        assert Client().get(FEED, HTTP_AUTHORIZATION=header).status_code == 401


def test_a_token_opens_only_the_feed(settings) -> None:
    settings.FEED_TOKENS = [TOKEN]
    for url in ["/", "/lifecycle/feed.jsonx", "/lifecycle/feed.json/"]:
        response = Client().get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_feed_makes_the_same_number_of_queries_for_many_images(
    viewer, django_assert_max_num_queries
) -> None:
    client = logged_in(viewer)
    for n in range(3):
        image = os_image(f"distro_{n}")
        released(image, "2026-08-01", 90)
        released(image, "2026-11-01", 1)
    # 18: the feed's own, and the advisories' security section (two, and two in the ETag).
    with django_assert_max_num_queries(18) as few:
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


def test_a_matching_etag_is_answered_from_the_fingerprint_without_building_the_feed(
    viewer, django_assert_max_num_queries
) -> None:
    client = logged_in(viewer)
    for n in range(3):
        released(os_image(f"distro_{n}"), "2026-08-01", 90)
    etag = client.get(FEED)["ETag"]
    with django_assert_max_num_queries(12) as few:
        assert client.get(FEED, HTTP_IF_NONE_MATCH=etag).status_code == 304
    small = len(few.captured_queries)
    for n in range(3, 30):
        released(os_image(f"distro_{n}"), "2026-08-01", 90)
    etag = client.get(FEED)["ETag"]
    with django_assert_max_num_queries(small) as many:
        assert client.get(FEED, HTTP_IF_NONE_MATCH=etag).status_code == 304
    # The change stamp alone: no row of the catalogue is read, let alone the document built.
    sql = " ".join(q["sql"] for q in many.captured_queries)
    assert "lifecycle_feedchange" in sql
    assert '"catalog_localimage"' not in sql and '"catalog_imageversion"' not in sql


def test_the_feed_never_reads_a_versions_manifest_or_recipe(viewer) -> None:
    version = released(os_image("debian_bookworm"), "2026-08-01", 90)
    version.manifest = [{"name": "bash", "version": "5.2"}]
    version.save(update_fields=["manifest"])
    client = logged_in(viewer)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(FEED).status_code == 200
    sql = " ".join(q["sql"] for q in ctx.captured_queries)
    assert '"manifest"' not in sql and '"recipe"' not in sql


@pytest.mark.parametrize(
    "change",
    [
        "image_state_by_update",
        "upstream_eol_by_update",
        "local_image_gone_by_update",
        "release_withdrawn",
        "category_renamed",
        "version_state_by_update",
        "local_image_storage_type_by_update",
        "image_storage_types_by_update",
    ],
)
def test_the_etag_changes_with_every_kind_of_change_the_feed_shows(viewer, change) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2028, 6, 30))
    version = released(image, "2026-08-01", 90)
    client = logged_in(viewer)
    first = client.get(FEED)
    if change == "image_state_by_update":
        Image.objects.filter(pk=image.pk).update(state="deprecated")
    elif change == "upstream_eol_by_update":
        UpstreamLifecycle.objects.filter(image=image).update(
            security_support_end=dt.date(2029, 1, 1)
        )
    elif change == "local_image_gone_by_update":
        LocalImage.objects.filter(version=version).update(state=LocalImageState.DELETED)
    elif change == "release_withdrawn":
        Release.objects.filter(version=version).update(withdrawn_at=version.released_at)
    elif change == "category_renamed":
        Category.objects.filter(pk=image.category_id).update(name="Linux")
    elif change == "local_image_storage_type_by_update":
        # (One storage type per zone is left, so that the update keeps them unique.)
        LocalImage.objects.filter(version=version, storage_type=StorageType.SBS).delete()
        first = client.get(FEED)
        LocalImage.objects.filter(version=version).update(storage_type=StorageType.SBS)
    elif change == "image_storage_types_by_update":
        Image.objects.filter(pk=image.pk).update(storage_types=[StorageType.SBS])
    else:
        ImageVersion.objects.filter(pk=version.pk).update(state=VersionState.WITHDRAWN)
    second = client.get(FEED, HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 200 and second.content != first.content
    assert second["ETag"] != first["ETag"]
    assert client.get(FEED, HTTP_IF_NONE_MATCH=second["ETag"]).status_code == 304


def _settings_feed_tokens(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """config.settings read in a fresh process, with the given environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FEED_TOKENS")}
    environ.update(FACTORY_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY="settings-test-key", **env)
    return subprocess.run(
        [sys.executable, "-c", "from config import settings; print(settings.FEED_TOKENS)"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_feed_tokens_are_read_from_a_file_and_too_short_ones_are_refused(tmp_path) -> None:
    tokens = tmp_path / "feed_tokens"
    tokens.write_text(f"{TOKEN}\n{OTHER_TOKEN}\n")
    read = _settings_feed_tokens(tmp_path, FEED_TOKENS="ignored-" * 5, FEED_TOKENS_FILE=str(tokens))
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == repr([TOKEN, OTHER_TOKEN])
    short = _settings_feed_tokens(tmp_path, FEED_TOKENS=f"{TOKEN},tiny-secret")
    assert short.returncode != 0 and "at least 32 characters" in short.stderr
    assert "tiny-secret" not in short.stderr


def test_an_unchanged_feed_is_not_built_again_and_a_changed_one_is(viewer) -> None:
    image = os_image("debian_bookworm")
    released(image, "2026-08-01", 90)
    client = logged_in(viewer)
    first = client.get(FEED)
    with CaptureQueriesContext(connection) as again:
        second = client.get(FEED)
    assert second.content == first.content and second["ETag"] == first["ETag"]
    assert not any('JOIN "catalog_category"' in q["sql"] for q in again)  # the build's
    released(image, "2026-11-01", 1)
    third = client.get(FEED)
    assert third["ETag"] != first["ETag"]
    assert third.json()["images"][0]["current_version"]["name"] == "2026-11-01"


def test_the_etag_changes_with_the_documents_shape_and_its_sections(viewer, monkeypatch) -> None:
    """An ETag a client holds from an older shape of the document (before a key was added, or
    without a section an app adds) never matches the new document."""
    from lifecycle import feed

    released(os_image("debian_bookworm"), "2026-08-01", 90)
    client = logged_in(viewer)
    first = client.get(FEED)
    monkeypatch.setattr(feed, "FEED_SHAPE", feed.FEED_SHAPE + 1)
    reshaped = client.get(FEED, headers={"If-None-Match": first["ETag"]})
    assert reshaped.status_code == 200 and reshaped["ETag"] != first["ETag"]

    def extra_section(image_ids: list[int] | None) -> dict[int, dict[str, object]]:
        return {}

    monkeypatch.setattr(feed, "_SECTIONS", [*feed._SECTIONS, extra_section])
    with_section = client.get(FEED, headers={"If-None-Match": reshaped["ETag"]})
    assert with_section.status_code == 200 and with_section["ETag"] != reshaped["ETag"]


def test_the_feed_pages_as_the_marketplace_api_does_with_an_etag_per_page(
    viewer, django_assert_max_num_queries
) -> None:
    client = logged_in(viewer)
    for n in range(5):
        released(os_image(f"distro_{n}"), "2026-08-01", 90)
    released(os_image("distro_0_withdrawn"), "2026-11-01", 1, withdrawn=True)
    version_with_images(os_image("distro_0_tested"), "2026-11-02", state=VersionState.TESTED)
    labels: list[str] = []
    paged: list[dict] = []
    etags = set()
    for page in (1, 2, 3, 4):
        with django_assert_max_num_queries(19):
            response = client.get(FEED, {"page": page, "per_page": 2})
        data = response.json()
        assert data["total_count"] == 7
        labels += [image["label"] for image in data["images"]]
        paged += data["images"]
        etags.add(response["ETag"])
        again = client.get(FEED, {"page": page, "per_page": 2}, HTTP_IF_NONE_MATCH=response["ETag"])
        assert again.status_code == 304
    assert labels == sorted(
        [f"distro_{n}" for n in range(5)] + ["distro_0_tested", "distro_0_withdrawn"]
    )
    assert len(etags) == 4
    whole = client.get(FEED).json()
    # Page by page, the same images as the whole document, down to every version's release
    # and local images (pages read their versions another way).
    assert paged == whole["images"]
    assert sum(bool(image["current_version"]) for image in paged) == 5
    assert sum(bool(image["versions"]) for image in paged) == 1  # the withdrawn one


def test_a_page_costs_the_same_queries_whatever_the_number_of_images(viewer) -> None:
    client = logged_in(viewer)

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(FEED, {"page": 1, "per_page": 3}).status_code == 200
        return len(ctx.captured_queries)

    for n in range(3):
        released(os_image(f"distro_{n}"), "2026-08-01", 90)
    few = page_queries()
    for n in range(3, 25):
        released(os_image(f"distro_{n}"), "2026-08-01", 90)
    assert page_queries() == few


@pytest.mark.parametrize(
    "query", ["page=0", "page=x", "per_page=0", "per_page=101", "page=-1&per_page=5"]
)
def test_a_bad_page_is_refused(viewer, query) -> None:
    response = logged_in(viewer).get(f"{FEED}?{query}")
    assert response.status_code == 400 and "error" in response.json()
