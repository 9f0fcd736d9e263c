"""Marketplace v2 through the real SDK (no secret key: the API is public) against a real
localcloud process, publishing through the operator API with plain HTTP JSON; responses are
validated against the OpenAPI contract."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import requests
from scaleway import Client, ScalewayException
from scaleway.marketplace.v2 import MarketplaceV2API

from localcloud.app import LocalCloud
from localcloud.http import ApiError
from tests.localcloud.contract import check_component

OP = "/localcloud/v1/marketplace"
AMD, ARM, AMS = (
    "11111111-0000-4000-8000-000000000001",
    "11111111-0000-4000-8000-000000000002",
    "11111111-0000-4000-8000-000000000003",
)


@pytest.fixture
def localcloud_url(localcloud) -> str:
    """The conftest's localcloud process (reset before each test)."""
    return localcloud.url


# --- the contract -----------------------------------------------------------------------------


def check_contract(body: dict, schema: str) -> None:
    check_component("scaleway.marketplace.v2.Api.yml", f"scaleway.marketplace.v2.{schema}", body)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def market(localcloud_url: str) -> MarketplaceV2API:
    """An SDK client with no secret key: the Marketplace API is public."""
    client = Client(api_url=localcloud_url, default_zone="fr-par-1", default_region="fr-par")
    return MarketplaceV2API(client, bypass_validation=True)


def op(url: str, method: str, path: str, body: dict | None = None, status: int = 200) -> dict:
    response = requests.request(method, f"{url}{OP}{path}", json=body, timeout=10)
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def publish(url: str, label: str, name: str, locals_: list[dict], version: str = "v1") -> dict:
    op(url, "PUT", f"/images/{label}", {"name": name, "categories": ["distribution"]})
    created = op(url, "POST", f"/images/{label}/versions", {"name": version})
    op(url, "POST", f"/versions/{created['id']}/local-images", {"local_images": locals_})
    return created


DEBIAN_LOCALS = [
    {
        "instance_image_id": AMD,
        "zone": "fr-par-1",
        "arch": "x86_64",
        "compatible_commercial_types": ["dev1-s", "DEV1-M"],
        "type": "instance_local",
    },
    {
        "instance_image_id": ARM,
        "zone": "fr-par-1",
        "arch": "arm64",
        "compatible_commercial_types": ["COPARM1-2C-8G"],
        "type": "instance_sbs",
    },
    {
        "instance_image_id": AMS,
        "zone": "nl-ams-1",
        "arch": "x86_64",
        "compatible_commercial_types": ["DEV1-S"],
        "type": "instance_local",
    },
]


def pick(market: MarketplaceV2API, label: str, zone: str, commercial_type: str) -> str | None:
    """The Go SDK's GetLocalImageByLabel, through the public API."""
    found = market.list_local_images(image_label=label, zone=zone)
    for local in found.local_images:
        if commercial_type.upper() in local.compatible_commercial_types:
            return local.id
    return None


# --- tests ------------------------------------------------------------------------------------


def test_publish_then_browse_and_resolve(localcloud_url: str, market: MarketplaceV2API) -> None:
    publish(localcloud_url, "debian_bookworm", "Debian 12 Bookworm", DEBIAN_LOCALS)

    listed = market.list_images(include_eol=False)
    image = next(i for i in listed.images if i.label == "debian_bookworm")
    assert image.name == "Debian 12 Bookworm" and image.valid_until is None
    assert image.categories == ["distribution"]
    assert market.get_image(image_id=image.id).label == "debian_bookworm"

    versions = market.list_versions(image_id=image.id)
    assert versions.total_count == 1 and versions.versions[0].name == "v1"
    assert versions.versions[0].published_at is not None
    assert market.get_version(version_id=versions.versions[0].id).name == "v1"

    locals_ = market.list_local_images(image_label="debian_bookworm", zone="fr-par-1")
    assert {li.id for li in locals_.local_images} == {AMD, ARM}
    assert locals_.local_images[0].type_ == "instance_local"  # type_asc by default
    arm = market.get_local_image(local_image_id=ARM)
    assert (arm.arch, arm.zone, arm.label) == ("arm64", "fr-par-1", "debian_bookworm")
    assert market.list_local_images(image_id=image.id, zone="nl-ams-1").local_images[0].id == AMS
    assert market.list_local_images(version_id=versions.versions[0].id, arch="arm64").total_count

    # Label resolution, per zone and commercial type (upper-cased compare).
    assert pick(market, "debian_bookworm", "fr-par-1", "dev1-m") == AMD
    assert pick(market, "debian_bookworm", "fr-par-1", "COPARM1-2C-8G") == ARM
    assert pick(market, "debian_bookworm", "nl-ams-1", "DEV1-S") == AMS
    assert pick(market, "debian_bookworm", "nl-ams-1", "DEV1-M") is None

    categories = market.list_categories()
    assert [c.name for c in categories.categories] == ["distribution"]
    assert market.get_category(category_id=categories.categories[0].id).name == "distribution"

    # The published local image ids are Instance image ids, so a second version uses new ones.
    duplicate = op(localcloud_url, "POST", "/images/debian_bookworm/versions", {"name": "dup"})
    op(
        localcloud_url,
        "POST",
        f"/versions/{duplicate['id']}/local-images",
        DEBIAN_LOCALS[0],
        status=409,
    )
    op(localcloud_url, "DELETE", f"/versions/{duplicate['id']}", status=204)


def test_versions_current_version_and_deletion(localcloud_url: str, market: MarketplaceV2API):
    v1 = publish(
        localcloud_url,
        "alma_9",
        "AlmaLinux 9",
        [{"instance_image_id": "22222222-0000-4000-8000-000000000001", "zone": "fr-par-2"}],
    )
    v2 = op(localcloud_url, "POST", "/images/alma_9/versions", {"name": "v2"})
    new_id = "22222222-0000-4000-8000-000000000002"
    op(
        localcloud_url,
        "POST",
        f"/versions/{v2['id']}/local-images",
        {"instance_image_id": new_id, "zone": "fr-par-2", "compatible_commercial_types": []},
    )
    # The latest published version is current.
    image_id = market.list_local_images(image_label="alma_9", zone="fr-par-2").local_images[0].id
    assert image_id == new_id

    pinned = op(localcloud_url, "PUT", "/images/alma_9/current-version", {"version_id": v1["id"]})
    assert pinned["current_version_id"] == v1["id"]
    listed = market.list_local_images(image_label="alma_9", zone="fr-par-2")
    assert [li.id for li in listed.local_images] == ["22222222-0000-4000-8000-000000000001"]
    op(localcloud_url, "PUT", "/images/alma_9/current-version", {"version_id": None})
    assert market.list_local_images(image_label="alma_9", zone="fr-par-2").local_images[0].id == (
        new_id
    )

    ordered = market.list_versions(image_id=pinned["id"], order_by="created_at_desc")
    assert [v.name for v in ordered.versions] == ["v2", "v1"]
    op(localcloud_url, "DELETE", f"/versions/{v2['id']}", status=204)
    with pytest.raises(ScalewayException) as caught:
        market.get_local_image(local_image_id=new_id)
    assert caught.value.status_code == 404
    view = op(localcloud_url, "GET", "/images/alma_9")
    assert view["current_version_id"] == v1["id"] and len(view["versions"]) == 1


def test_deprecation_hides_image_unless_include_eol(localcloud_url: str, market):
    publish(
        localcloud_url,
        "centos_7",
        "CentOS 7",
        [{"instance_image_id": "33333333-0000-4000-8000-000000000001", "zone": "fr-par-1"}],
    )
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    deprecated = op(localcloud_url, "PUT", "/images/centos_7/valid-until", {"valid_until": past})
    assert deprecated["deprecated"] is True and deprecated["valid_until"].endswith("Z")

    visible = {i.label for i in market.list_images_all(include_eol=False)}
    everything = {i.label for i in market.list_images_all(include_eol=True)}
    assert "centos_7" not in visible and "centos_7" in everything
    eol = next(i for i in market.list_images(include_eol=True).images if i.label == "centos_7")
    assert eol.valid_until is not None and eol.valid_until < dt.datetime.now(dt.UTC)

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    op(localcloud_url, "PUT", "/images/centos_7/valid-until", {"valid_until": future})
    assert "centos_7" in {i.label for i in market.list_images_all(include_eol=False)}
    op(localcloud_url, "PUT", "/images/centos_7/valid-until", {"valid_until": None})
    assert "centos_7" in {i.label for i in market.list_images_all(include_eol=False)}


def test_unknown_label_is_the_real_404(market: MarketplaceV2API) -> None:
    with pytest.raises(ScalewayException) as caught:
        market.list_local_images(image_label="no_such_label", zone="fr-par-1")
    assert caught.value.status_code == 404
    body = caught.value.response.json()
    assert body["type"] == "not_found"
    assert (body["resource"], body["resource_id"]) == ("MarketplaceImage", "no_such_label")


def test_pagination_and_order(localcloud_url: str, market: MarketplaceV2API) -> None:
    for n in range(23):
        op(localcloud_url, "PUT", f"/images/page_{n:02d}", {"name": f"Page {n:02d}"})
    total = market.list_images(include_eol=True, page_size=1).total_count
    assert total >= 23
    first = market.list_images(include_eol=True, page_size=10, page=1)
    assert len(first.images) == 10 and first.total_count == total
    names = [i.name for i in first.images]
    assert names == sorted(names)
    assert len(market.list_images(include_eol=True, page_size=10, page=99).images) == 0
    everything = market.list_images_all(include_eol=True, page_size=10)
    assert len(everything) == total and len({i.id for i in everything}) == total
    desc = market.list_images(include_eol=True, order_by="name_desc", page_size=100)
    assert [i.name for i in desc.images] == sorted((i.name for i in everything), reverse=True)


def test_responses_match_the_openapi_contract(localcloud_url: str) -> None:
    publish(
        localcloud_url,
        "ubuntu_noble",
        "Ubuntu 24.04",
        [{"instance_image_id": "44444444-0000-4000-8000-000000000001", "zone": "pl-waw-1"}],
    )

    def get(path: str) -> dict:
        # No X-Auth-Token at all: the API is public.
        response = requests.get(f"{localcloud_url}/marketplace/v2{path}", timeout=10)
        assert response.status_code == 200, response.text
        assert "x-total-count" not in response.headers
        return response.json()

    images = get("/images?include_eol=false&page_size=100")
    check_contract(images, "ListImagesResponse")
    image = next(i for i in images["images"] if i["label"] == "ubuntu_noble")
    check_contract(get(f"/images/{image['id']}"), "Image")
    versions = get(f"/versions?image_id={image['id']}")
    check_contract(versions, "ListVersionsResponse")
    check_contract(get(f"/versions/{versions['versions'][0]['id']}"), "Version")
    locals_ = get("/local-images?image_label=ubuntu_noble&zone=pl-waw-1")
    check_contract(locals_, "ListLocalImagesResponse")
    check_contract(get(f"/local-images/{locals_['local_images'][0]['id']}"), "LocalImage")
    categories = get("/categories")
    check_contract(categories, "ListCategoriesResponse")
    check_contract(get(f"/categories/{categories['categories'][0]['id']}"), "Category")
    missing = requests.get(f"{localcloud_url}/marketplace/v2/images/nope", timeout=10)
    assert missing.status_code == 404 and json.loads(missing.text)["type"] == "not_found"


# --- the resolution hook, in process ----------------------------------------------------------


def test_resolve_hook_per_zone_type_and_deprecation(tmp_path: Path) -> None:
    from localcloud.http import Request

    cloud = LocalCloud(tmp_path / "state")

    def call(method: str, path: str, body: dict) -> dict:
        request = Request.parse(method, f"{OP}{path}", {}, json.dumps(body).encode())
        response = cloud.handle(request)
        assert response.status < 300, response.body
        return response.body

    call("PUT", "/images/debian_bookworm", {"name": "Debian 12"})
    version = call("POST", "/images/debian_bookworm/versions", {"name": "v1"})
    call("POST", f"/versions/{version['id']}/local-images", {"local_images": DEBIAN_LOCALS})

    resolve = cloud.hooks["resolve_marketplace_image"]
    assert resolve is cloud.resolve_marketplace_image
    assert resolve("fr-par-1", "debian_bookworm", "dev1-s") == AMD
    assert resolve("fr-par-1", "debian_bookworm", "COPARM1-2C-8G") == ARM
    assert resolve("nl-ams-1", "debian_bookworm", "DEV1-S") == AMS
    assert resolve("nl-ams-1", "debian_bookworm", "GP1-XS") is None
    assert resolve("pl-waw-1", "debian_bookworm", "DEV1-S") is None
    assert resolve("fr-par-1", "unknown_label", "DEV1-S") is None
    assert resolve("fr-par-1", AMD, "DEV1-S") == AMD  # a local-image id resolves to itself
    assert resolve("nl-ams-1", AMD, "DEV1-S") is None  # ... but only in its zone

    call("PUT", "/images/debian_bookworm/valid-until", {"valid_until": "2020-01-01T00:00:00Z"})
    for image in ("debian_bookworm", AMD):
        with pytest.raises(ApiError) as caught:
            resolve("fr-par-1", image, "DEV1-S")
        assert caught.value.status == 400
        assert caught.value.body["type"] == "invalid_request_error"
        assert caught.value.body["message"] == (
            "image debian_bookworm is deprecated since 2020-01-01T00:00:00Z: "
            "it can no longer start new instances"
        )
