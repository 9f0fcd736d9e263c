"""The Marketplace publisher and the two storage types: one local image per (zone, arch,
storage type), compatible with the commercial types the zone's own product list says boot
from that storage, within the image's allowed types and architecture. Checked against a real
localcloud through the real Scaleway SDK (its product list, its Marketplace)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage
from cloud import clients, products, publisher
from cloud.retries import CloudError
from tests.catalog.factories import os_image
from tests.cloud.localcloud import Cloud
from tests.lifecycle import enable_zones
from tests.localcloud.conftest import wait_for

pytestmark = pytest.mark.django_db

PRODUCTS_OP = "GET /instance/v1/zones/{zone}/products/servers"
LOCAL, SBS = StorageType.LOCAL.value, StorageType.SBS.value


def version_on(image, arch: str = "x86_64", zones=("fr-par-1",), storage=(LOCAL, SBS)):
    """A version with an available local image (made-up instance image id: the Marketplace
    records ids, it does not boot them) per zone and storage type."""
    version = ImageVersion.objects.create(image=image, arch=arch, name="2026-11-01")
    for zone in enable_zones(*zones):
        for storage_type in storage:
            LocalImage.objects.create(
                version=version,
                zone=zone,
                storage_type=storage_type,
                provider_image_id=str(uuid.uuid4()),
                state=LocalImageState.AVAILABLE,
            )
    return version


def publish(image, version) -> str:
    port = publisher.get_publisher()
    assert isinstance(port, publisher.LocalcloudPublisher)
    return port.publish_release(image, version, version.local_images.select_related("zone"))


def marketplace_types(version_id: str) -> dict[tuple[str, str], list[str]]:
    """{(zone, type): compatible commercial types} of a Marketplace version, as customers
    read it."""
    market = clients.marketplace_api()
    found = {}
    for zone in ("fr-par-1", "fr-par-2"):  # the SDK asks for one zone at a time
        for li in market.list_local_images_all(version_id=version_id, zone=zone):
            found[(li.zone, str(li.type_))] = li.compatible_commercial_types
    return found


def offered(zone: str = "fr-par-1") -> dict[str, object]:
    return clients.instance_v1_api().list_servers_types(zone=zone, per_page=100).servers


def test_each_storage_type_gets_the_types_that_boot_from_it(cloud: Cloud) -> None:
    image = os_image("debian_bookworm")
    image.commercial_types = []  # no restriction
    image.save()
    version = version_on(image)
    published = marketplace_types(publish(image, version))

    local = published[("fr-par-1", LOCAL)]
    sbs = published[("fr-par-1", SBS)]
    # A type with both kinds of storage is on both; PLAY2 and PRO2 types, without local
    # storage, only on Block Storage; the arm64 type on neither (an x86_64 version).
    assert "DEV1-S" in local and "DEV1-S" in sbs and "GP1-S" in local and "GP1-S" in sbs
    for block_only in ("PRO2-XS", "PLAY2-NANO", "POP2-2C-8G"):
        assert block_only in sbs and block_only not in local
    assert "COPARM1-2C-8G" not in local + sbs
    # Everything named is a type the product list offers with that storage.
    types = offered()
    assert all(types[name].volumes_constraint.max_size > 0 for name in local)
    assert all(types[name].capabilities.block_storage for name in sbs)
    assert set(local) < set(sbs)
    local_row = version.local_images.get(storage_type=LOCAL)
    market = clients.marketplace_api()
    assert str(market.get_local_image(local_image_id=local_row.provider_image_id).type_) == LOCAL


def test_the_types_are_kept_to_the_images_allowed_types(cloud: Cloud) -> None:
    image = os_image("debian_bookworm")
    image.commercial_types = ["DEV1-S", "gp1-s", "PRO2-XS", "COPARM1-2C-8G", "NOPE-1"]
    image.save()
    published = marketplace_types(publish(image, version_on(image)))
    assert published == {
        ("fr-par-1", LOCAL): ["DEV1-S", "GP1-S"],
        ("fr-par-1", SBS): ["DEV1-S", "GP1-S", "PRO2-XS"],
    }


def test_an_arm64_version_gets_arm64_types_and_no_local_image_without_one(cloud: Cloud) -> None:
    image = os_image("debian_bookworm")
    image.commercial_types = []
    image.save()
    published = marketplace_types(publish(image, version_on(image, arch="arm64")))
    # localcloud's only arm64 type (COPARM1) has no local storage: nothing boots the local
    # image, which is therefore not offered.
    assert published == {("fr-par-1", SBS): ["COPARM1-2C-8G"]}


def test_a_local_image_no_allowed_type_boots_is_left_out_and_none_at_all_is_an_error(
    cloud: Cloud,
) -> None:
    image = os_image("debian_bookworm")
    image.commercial_types = ["PRO2-XS"]
    image.save()
    published = marketplace_types(publish(image, version_on(image)))
    assert published == {("fr-par-1", SBS): ["PRO2-XS"]}

    only_local = os_image("ubuntu_noble")
    only_local.commercial_types = ["PRO2-XS"]
    only_local.storage_types = [LOCAL]
    only_local.save()
    with pytest.raises(CloudError, match="no local image to publish"):
        publish(only_local, version_on(only_local, storage=(LOCAL,)))
    labels = [i.label for i in clients.marketplace_api().list_images(include_eol=True).images]
    assert "ubuntu_noble" not in labels


def test_the_product_list_is_read_once_per_zone(cloud: Cloud) -> None:
    image = os_image("debian_bookworm")
    version = version_on(image, zones=("fr-par-1", "fr-par-2"))
    # A fault that delays nothing and fails nothing, but counts the calls it meets.
    cloud.fault(operation=PRODUCTS_OP, count=10, status=200, delay=0.0)
    published = marketplace_types(publish(image, version))
    assert len(published) == 4  # 2 zones x 2 storage types
    left = [f for f in cloud.process.operator("GET", "faults")["faults"] if f["status"] == 200]
    assert left[0]["count"] == 10 - 2


def test_a_product_list_that_cannot_be_read_fails_in_words_and_publishes_nothing(
    cloud: Cloud, settings
) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 2
    image = os_image("debian_bookworm")
    version = version_on(image, zones=("fr-par-1", "fr-par-2"))
    cloud.fault(operation=PRODUCTS_OP, count=5, status=500, message="products unavailable")
    with pytest.raises(CloudError) as failed:
        publish(image, version)
    assert "list the Instance types of fr-par-1" in str(failed.value)
    assert "products unavailable" in str(failed.value)
    assert clients.marketplace_api().list_images(include_eol=True).images == []


def test_an_unknown_storage_type_is_refused_before_anything_is_published(cloud: Cloud) -> None:
    image = os_image("debian_bookworm")
    version = version_on(image, storage=(LOCAL,))
    version.local_images.update(storage_type="instance_nvme")
    with pytest.raises(CloudError, match="unknown storage type 'instance_nvme'"):
        publish(image, version)
    assert clients.marketplace_api().list_images(include_eol=True).images == []
    with pytest.raises(CloudError, match="Unknown storage type"):
        products.compatible_types(products.server_types("fr-par-1"), "instance_nvme", "x86_64")


@pytest.fixture
def real_images(cloud: Cloud, qcow2_artefact: Path) -> dict[str, str]:
    """{storage type: Instance image id} in fr-par-1: one image over an l_ssd snapshot, one
    over a Block snapshot, both from one QCOW2, as the publish stage makes them."""
    s3 = cloud.s3("fr-par")
    if "images" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        # moto keeps buckets (not objects) from one test to the next
        s3.create_bucket(
            Bucket="images", CreateBucketConfiguration={"LocationConstraint": "fr-par"}
        )
    s3.upload_file(str(qcow2_artefact), "images", "base.qcow2")
    api, block = clients.instance_api(), clients.block_api()
    snapshot = api.create_snapshot(
        zone="fr-par-1", bucket="images", key="base.qcow2", volume_type="l_ssd"
    ).snapshot
    imported = block.import_snapshot_from_object_storage(
        zone="fr-par-1",
        bucket="images",
        key="base.qcow2",
        name="base",
        project_id=clients.project_id(),
    )
    wait_for(
        lambda: api.get_snapshot(zone="fr-par-1", snapshot_id=snapshot.id).snapshot,
        lambda s: s.state == "available",
    )
    block.wait_for_snapshot(zone="fr-par-1", snapshot_id=imported.id)
    return {
        LOCAL: api.create_image(zone="fr-par-1", root_volume=snapshot.id, arch="x86_64").image.id,
        SBS: api.create_image(zone="fr-par-1", root_volume=imported.id, arch="x86_64").image.id,
    }


def version_of(image, ids: dict[str, str]):
    version = version_on(image, storage=tuple(ids))
    for storage_type, image_id in ids.items():
        version.local_images.filter(storage_type=storage_type).update(provider_image_id=image_id)
    return version


def test_a_server_made_from_the_label_gets_the_image_its_type_can_boot(
    cloud: Cloud, real_images: dict[str, str]
) -> None:
    """What the customer sees: a DEV1 server boots the local image, a PRO2 server (no local
    storage) the Block Storage one, with a Block root volume."""
    image = os_image("debian_bookworm")
    image.commercial_types = []
    image.save()
    version = version_of(image, real_images)
    port = publisher.get_publisher()
    publish(image, version)
    port.set_current(image, version)
    api = clients.instance_api()

    dev = api.create_server(zone="fr-par-1", commercial_type="DEV1-S", image=image.label).server
    assert dev.image.id == real_images[LOCAL]
    assert str(dev.volumes["0"].volume_type) == "l_ssd"
    pro = api.create_server(zone="fr-par-1", commercial_type="PRO2-XS", image=image.label).server
    assert pro.image.id == real_images[SBS]
    assert str(pro.volumes["0"].volume_type) == "sbs_volume"


def test_the_feed_only_publisher_tags_both_kinds_of_instance_image(
    cloud: Cloud, real_images: dict[str, str], monkeypatch
) -> None:
    monkeypatch.setenv("MARKETPLACE_PUBLISHER", "feed")
    image = os_image("debian_bookworm")
    version = version_of(image, real_images)
    port = publisher.get_publisher()
    assert port.publish_release(image, version, version.local_images.select_related("zone")) == ""
    api = clients.instance_api()
    for image_id in real_images.values():
        tags = api.get_image(zone="fr-par-1", image_id=image_id).image.tags
        assert "factory:released" in tags
