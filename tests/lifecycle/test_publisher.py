"""The Marketplace publisher port: choosing the backend from the environment, the localcloud
backend's valid_until and idempotence, and the feed-only backend's image tags, all checked
through the real Scaleway SDK against a real localcloud."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import pytest
from scaleway_core.api import ScalewayException

from cloud import clients, publisher
from cloud.retries import CloudError
from lifecycle import releases
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle import COMMERCIAL_TYPES, ZONE_CODES, enable_zones, published_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def image():
    image = os_image("debian_bookworm")
    image.commercial_types = COMMERCIAL_TYPES
    image.save()
    enable_zones(*ZONE_CODES)
    return image


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def tags_of(local) -> list[str]:
    api = clients.instance_api()
    return api.get_image(zone=local.zone.code, image_id=local.provider_image_id).image.tags


def test_the_publisher_is_localcloud_when_the_api_url_is_a_localcloud(
    cloud: Cloud, monkeypatch
) -> None:
    monkeypatch.delenv("MARKETPLACE_PUBLISHER", raising=False)
    chosen = publisher.get_publisher()
    assert isinstance(chosen, publisher.LocalcloudPublisher) and chosen.name == "localcloud"
    assert "valid_until" in chosen.describe()


def test_the_publisher_is_feed_only_for_any_other_cloud(monkeypatch) -> None:
    monkeypatch.delenv("MARKETPLACE_PUBLISHER", raising=False)
    monkeypatch.delenv("SCW_API_URL", raising=False)
    assert publisher.get_publisher().name == "feed"
    monkeypatch.setenv("SCW_API_URL", closed_port_url())
    chosen = publisher.get_publisher()
    assert isinstance(chosen, publisher.FeedOnlyPublisher)
    assert "enforces nothing" in chosen.describe()


def test_the_environment_chooses_the_backend_and_a_typo_is_a_plain_error(
    cloud: Cloud, monkeypatch
) -> None:
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "feed")
    assert publisher.get_publisher().name == "feed"
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "marketplace")
    with pytest.raises(CloudError, match="MARKETPLACE_PUBLISHER must be one of localcloud, feed"):
        publisher.get_publisher()


def test_publishing_the_same_release_twice_reuses_its_marketplace_version(
    cloud: Cloud, image, qcow2_artefact: Path
) -> None:
    version = published_version(image, "2026-11-01", qcow2_artefact)
    port = publisher.get_publisher()
    locals_ = list(version.local_images.select_related("zone"))
    first = port.publish_release(image, version, locals_)
    assert port.publish_release(image, version, locals_) == first
    market = clients.marketplace_api()
    found = next(i for i in market.list_images(include_eol=True).images if i.label == image.label)
    assert market.list_versions(image_id=found.id).total_count == 1


def test_an_operator_error_is_a_cloud_error_in_words(cloud: Cloud, image) -> None:
    port = publisher.get_publisher()
    version = image.versions.create(name="2026-11-01")
    with pytest.raises(CloudError, match="is not in the Marketplace"):
        port.set_current(image, version)
    port.set_valid_until(image, None)  # creates the entry
    broken = publisher.LocalcloudPublisher(cloud.url)
    with pytest.raises(CloudError, match=r"HTTP 404"):
        broken._request("PUT", "/images/nope/current-version", {"version_id": None})


def test_valid_until_hides_the_image_and_refuses_new_servers_from_its_label(
    cloud: Cloud, image, qcow2_artefact: Path, release_manager
) -> None:
    version = published_version(image, "2026-11-01", qcow2_artefact)
    releases.release(version, release_manager)
    api, market = clients.instance_api(), clients.marketplace_api()
    kept = api.create_server(zone="fr-par-1", commercial_type="DEV1-S", image=image.label).server

    port = publisher.get_publisher()
    port.set_valid_until(image, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    assert image.label not in [i.label for i in market.list_images(include_eol=False).images]
    assert image.label in [i.label for i in market.list_images(include_eol=True).images]
    with pytest.raises(ScalewayException) as refused:
        api.create_server(zone="fr-par-1", commercial_type="DEV1-S", image=image.label)
    assert "deprecated" in str(refused.value)
    assert api.get_server(zone="fr-par-1", server_id=kept.id).server.id == kept.id

    port.set_valid_until(image, None)
    assert image.label in [i.label for i in market.list_images(include_eol=False).images]


def test_feed_only_releases_tag_the_instance_images_and_publish_nothing(
    cloud: Cloud, image, qcow2_artefact: Path, release_manager, monkeypatch
) -> None:
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "feed")
    old = published_version(image, "2026-08-01", qcow2_artefact, days_ago=90)
    new = published_version(image, "2026-11-01", qcow2_artefact)
    first = releases.release(old, release_manager)
    releases.release(new, release_manager)
    assert first.publisher == "feed" and first.marketplace_version_id == ""

    for local in new.local_images.select_related("zone"):
        tags = tags_of(local)
        assert {"factory:released", "factory:current", "image-factory"} <= set(tags)
    for local in old.local_images.select_related("zone"):
        tags = tags_of(local)
        assert "factory:released" in tags and "factory:current" not in tags
    assert clients.marketplace_api().list_images(include_eol=True).images == []

    releases.withdraw(new, release_manager, "regression")
    assert "factory:current" in tags_of(old.local_images.select_related("zone").first())

    publisher.get_publisher().set_valid_until(image, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    for local in new.local_images.select_related("zone"):
        tags = tags_of(local)
        assert "factory:deprecated" in tags
        assert "factory:valid-until=2026-12-01T00:00:00Z" in tags
    publisher.get_publisher().set_valid_until(image, None)
    local = new.local_images.select_related("zone").first()
    assert not [t for t in tags_of(local) if "deprecated" in t or "valid-until" in t]
