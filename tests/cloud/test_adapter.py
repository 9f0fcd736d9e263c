"""The cloud adapter through the real SDK and boto3 against localcloud: clients from the
environment, retries of each error class, plain errors, deadlines, waiters, objects."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloud import clients, objectstorage, tags, waiters
from cloud.cancel import Cancelled
from cloud.retries import CloudError, CloudTimeout, call
from tests.cloud.localcloud import Cloud

LIST_IMAGES = "GET /instance/v1/zones/{zone}/images"
CREATE_SNAPSHOT = "POST /instance/v1/zones/{zone}/snapshots"


def test_s3_endpoints_from_the_environment_or_the_convention(monkeypatch) -> None:
    monkeypatch.setenv("SCW_S3_ENDPOINTS", "fr-par=http://127.0.0.1:9001/, nl-ams=http://h:2")
    assert clients.s3_endpoints() == {"fr-par": "http://127.0.0.1:9001", "nl-ams": "http://h:2"}
    assert clients.s3_endpoint("pl-waw") == "https://s3.pl-waw.scw.cloud"
    monkeypatch.setenv("SCW_ACCESS_KEY", "SCWXXXXXXXXXXXXXXXXX")
    monkeypatch.setenv("SCW_SECRET_KEY", "11111111-1111-1111-1111-111111111111")
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", "11111111-1111-1111-1111-111111111111")
    local = clients.s3_client("fr-par")
    assert local.meta.endpoint_url == "http://127.0.0.1:9001"
    assert local.meta.config.s3["addressing_style"] == "path"
    real = clients.s3_client("pl-waw")
    assert real.meta.endpoint_url == "https://s3.pl-waw.scw.cloud"
    assert real.meta.config.s3["addressing_style"] == "virtual"


def test_missing_configuration_is_named_not_shown(monkeypatch) -> None:
    monkeypatch.setenv("SCW_CONFIG_PATH", "/nonexistent/config.yaml")
    monkeypatch.setenv("SCW_SECRET_KEY", "11111111-1111-1111-1111-111111111111")
    monkeypatch.delenv("SCW_ACCESS_KEY", raising=False)
    monkeypatch.delenv("SCW_DEFAULT_PROJECT_ID", raising=False)
    with pytest.raises(CloudError) as failure:
        clients.instance_api()
    assert "SCW_ACCESS_KEY, SCW_DEFAULT_PROJECT_ID" in str(failure.value)
    assert "11111111" not in str(failure.value)


def test_503_is_retried(cloud: Cloud) -> None:
    cloud.fault(operation=LIST_IMAGES, count=2, status=503)
    api = clients.instance_api()
    answer = call(api.list_images, zone="fr-par-1", what="list images")
    assert answer.images == []
    assert cloud.process.operator("GET", "faults")["faults"] == []


def test_429_waits_for_retry_after(cloud: Cloud) -> None:
    cloud.fault(operation=LIST_IMAGES, count=1, status=429, retry_after=1)
    api = clients.instance_api()
    started = time.monotonic()
    call(api.list_images, zone="fr-par-1", what="list images")
    assert time.monotonic() - started >= 1.0


def test_retries_are_bounded(cloud: Cloud, settings) -> None:
    settings.CLOUD_RETRY_ATTEMPTS = 3
    cloud.fault(operation=LIST_IMAGES, count=10, status=502, message="bad gateway")
    with pytest.raises(CloudError) as failure:
        call(clients.instance_api().list_images, zone="fr-par-1", what="list images in fr-par-1")
    assert str(failure.value) == (
        "list images in fr-par-1: bad gateway [HTTP 502] (gave up after 3 attempts)"
    )


def test_4xx_is_a_plain_error_with_the_api_message(cloud: Cloud) -> None:
    api = clients.instance_api()
    with pytest.raises(CloudError) as failure:
        call(
            api.get_image,
            image_id="00000000-0000-0000-0000-000000000001",
            zone="fr-par-1",
            what="get image",
        )
    assert failure.value.not_found
    assert str(failure.value).startswith("get image: resource is not found (instance_image ")
    with pytest.raises(CloudError) as refused:
        call(
            api.create_snapshot,
            zone="fr-par-1",
            bucket="nowhere",
            key="x.qcow2",
            volume_type="l_ssd",
            what="import",
        )
    assert refused.value.status == 400
    assert "nowhere" in str(refused.value)


def test_a_slow_call_times_out_then_succeeds(cloud: Cloud, settings) -> None:
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 0.3
    cloud.fault(operation=LIST_IMAGES, count=1, delay=10.0, status=200)
    started = time.monotonic()
    call(clients.instance_api().list_images, zone="fr-par-1", what="list images")
    # At least the timeout, and the retry's answer came long before the slow one's would have.
    assert 0.3 <= time.monotonic() - started < 8.0


def test_a_call_that_always_times_out_fails_as_a_timeout(cloud: Cloud, settings) -> None:
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 0.2
    settings.CLOUD_RETRY_ATTEMPTS = 2
    cloud.fault(operation=LIST_IMAGES, count=2, delay=1.0, status=200)
    with pytest.raises(CloudTimeout) as failure:
        call(clients.instance_api().list_images, zone="fr-par-1", what="list images")
    assert "no answer from the API within 0.2 s" in str(failure.value)


def test_cancel_interrupts_a_hanging_call(cloud: Cloud) -> None:
    cloud.fault(operation=LIST_IMAGES, count=1, delay=10.0, status=200)
    deadline = time.monotonic() + 0.3
    started = time.monotonic()
    with pytest.raises(Cancelled):
        call(
            clients.instance_api().list_images,
            zone="fr-par-1",
            what="list images",
            cancelled=lambda: time.monotonic() > deadline,
        )
    assert time.monotonic() - started < 8.0  # long before the hanging answer would come


def test_import_wait_and_lookup_by_tag(cloud: Cloud, qcow2_artefact: Path) -> None:
    s3 = clients.s3_client("fr-par")
    bucket = "adapter-test"
    assert objectstorage.ensure_bucket(s3, bucket, "fr-par") in (True, False)
    key = f"{tags.object_prefix(7)}disk.qcow2"
    sent: list[int] = []
    objectstorage.upload(
        s3,
        bucket,
        key,
        qcow2_artefact,
        metadata={"sha256": "x"},
        on_progress=sent.append,
        cancelled=lambda: False,
    )
    assert sent[-1] == qcow2_artefact.stat().st_size
    assert objectstorage.head(s3, bucket, key)["Metadata"] == {"sha256": "x"}

    api = clients.instance_api()
    created = api.create_snapshot(
        zone="fr-par-2",
        bucket=bucket,
        key=key,
        volume_type="l_ssd",
        name="adapter",
        tags=tags.tags_for(7),
    ).snapshot
    snapshot = waiters.wait_for_snapshot(api, "fr-par-2", created.id, timeout=10)
    assert snapshot.state == "available"
    assert [s.id for s in tags.find_snapshots(api, "fr-par-2", 7)] == [created.id]
    assert tags.find_snapshots(api, "fr-par-2", 8) == []
    assert tags.find_snapshots(api, "fr-par-1", 7) == []

    assert objectstorage.delete_prefix(s3, "fr-par", bucket, tags.object_prefix(7)) == [key]
    assert objectstorage.head(s3, bucket, key) is None


def test_waiter_deadline(cloud: Cloud, settings) -> None:
    with pytest.raises(CloudTimeout) as failure:
        waiters.wait_for(
            lambda: "importing",
            state_of=str,
            until=("available",),
            what="snapshot x",
            timeout=0.2,
        )
    assert str(failure.value) == "snapshot x: still importing after 0.2 s"


def test_tags() -> None:
    assert tags.tags_for(12) == ["image-factory", "build:12"]
    assert tags.build_id_of(["a", "build:12"]) == 12
    assert tags.build_id_of(["image-factory"]) is None
    assert tags.build_id_of_key("image-factory/build-12/fr-par/x.qcow2") == 12
    assert tags.is_of_build(["image-factory", "build:12", "x"], 12)
    assert not tags.is_of_build(["image-factory", "build:123"], 12)
