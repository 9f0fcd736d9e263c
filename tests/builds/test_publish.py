"""Publishing through the real Scaleway SDK and boto3 against a real localcloud subprocess:
one upload per region, images of both storage types (local and Block Storage) in three zones
of two regions, every class of API error, resuming without duplicates, cancel, discard, and
no credential in logs or rows."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from django.core import serializers

from builds.models import Build
from builds.publish import PublishError, discard, publish, retry_zone
from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients
from cloud.cancel import Cancelled
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ACCESS_KEY, ZONES, Cloud

SNAPSHOTS_OP = "POST /instance/v1/zones/{zone}/snapshots"
BLOCK_IMPORT_OP = "POST /block/v1/zones/{zone}/snapshots/import-from-object-storage"
LOCAL, SBS = StorageType.LOCAL, StorageType.SBS
# What a (zone, storage type) publish makes: both storage types in each of the three zones.
EVERY = sorted((zone, kind) for zone in ZONES for kind in (LOCAL, SBS))


class Recorder:
    """Collects what publish reports: log lines and progress."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress: list[tuple[int, int | None, str]] = []
        self.cancel = threading.Event()

    def log(self, line: str) -> None:
        self.lines.append(line)

    def report(self, done: int, total: int | None, unit: str = "bytes") -> None:
        self.progress.append((done, total, unit))

    def cancelled(self) -> bool:
        return self.cancel.is_set()


class CancelAfterImport(Recorder):
    """Asks for a cancel one second after publish logs its first snapshot import."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled_at: float | None = None
        self.timer: threading.Timer | None = None

    def log(self, line: str) -> None:
        super().log(line)
        if ": importing " in line and self.timer is None:
            self.timer = threading.Timer(1.0, self._cancel)
            self.timer.start()

    def _cancel(self) -> None:
        self.cancelled_at = time.monotonic()
        self.cancel.set()


@pytest.fixture
def version(db, qcow2_artefact: Path) -> ImageVersion:
    image = os_image("debian_bookworm")
    for code in ZONES:
        Zone.objects.create(code=code, enabled=True)
    Zone.objects.create(code="pl-waw-1", enabled=False)
    version = ImageVersion.objects.create(
        image=image, arch="x86_64", name="2026-11-26", artefact_path=str(qcow2_artefact)
    )
    Build.objects.create(image=image, arch="x86_64", state="publishing", version=version)
    return version


def run_publish(version: ImageVersion, artefact: Path, recorder: Recorder) -> list[LocalImage]:
    return publish(
        build_id=version.build.pk,
        version=version,
        artefact=artefact,
        zones=Zone.objects.all(),
        log=recorder.log,
        progress=recorder.report,
        cancelled=recorder.cancelled,
    )


def factory_images(zone: str, build_id: int) -> list:
    return clients.instance_api().list_images_all(zone=zone, tags=f"build:{build_id}")


def factory_snapshots(zone: str, build_id: int) -> list:
    return clients.instance_api().list_snapshots_all(zone=zone, tags=f"build:{build_id}")


def factory_block_snapshots(zone: str, build_id: int) -> list:
    return clients.block_api().list_snapshots_all(
        zone=zone, tags=[f"build:{build_id}"], include_deleted=False
    )


def published(images: list[LocalImage]) -> list[tuple[str, str]]:
    return sorted((li.zone.code, li.storage_type) for li in images)


def assert_one_of_each(build_id: int) -> None:
    """Every zone holds exactly one image of each storage type and one snapshot of each API."""
    for zone in ZONES:
        images = factory_images(zone, build_id)
        roots = sorted(i.root_volume.volume_type for i in images)
        assert roots == ["l_ssd", "sbs_snapshot"], zone
        assert len(factory_snapshots(zone, build_id)) == 1, zone
        assert len(factory_block_snapshots(zone, build_id)) == 1, zone


def test_publish_in_three_zones_of_two_regions(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    recorder = Recorder()
    images = run_publish(version, qcow2_artefact, recorder)

    build_id = version.build.pk
    assert published(images) == EVERY  # pl-waw-1 is disabled
    for li in images:
        assert li.state == LocalImageState.AVAILABLE
        found = [i for i in factory_images(li.zone.code, build_id) if i.id == li.provider_image_id]
        assert len(found) == 1
        assert found[0].state == "available"
        assert found[0].root_volume.id == li.snapshot_id
        assert set(found[0].tags) == {"image-factory", f"build:{build_id}"}
        assert found[0].name == "debian-bookworm-2026-11-26-x86-64"
        if li.storage_type == SBS:
            # The image's root is a Block Storage snapshot, known to the Block API only.
            assert found[0].root_volume.volume_type == "sbs_snapshot"
            block = clients.block_api().get_snapshot(zone=li.zone.code, snapshot_id=li.snapshot_id)
            assert block.status in ("available", "in_use")
            assert set(block.tags) == {"image-factory", f"build:{build_id}"}
            assert [s.id for s in factory_snapshots(li.zone.code, build_id)] != [li.snapshot_id]
        else:
            assert found[0].root_volume.volume_type == "l_ssd"
            assert [s.id for s in factory_snapshots(li.zone.code, build_id)] == [li.snapshot_id]
    assert_one_of_each(build_id)
    assert factory_images("pl-waw-1", build_id) == []
    # One upload per region: one object in each region's part of the bucket.
    keys = cloud.objects("fr-par")  # moto shares one store between the regions' endpoints
    assert sorted(keys) == [
        f"image-factory/build-{build_id}/fr-par/2026-11-26-x86_64.qcow2",
        f"image-factory/build-{build_id}/nl-ams/2026-11-26-x86_64.qcow2",
    ]
    size = qcow2_artefact.stat().st_size
    assert recorder.progress[-1] == (2 * size, 2 * size, "bytes")
    assert any("fr-par-2 local: image" in line for line in recorder.lines)
    assert any("fr-par-2 block: image" in line for line in recorder.lines)


def test_an_image_published_on_local_storage_only(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    version.image.storage_types = [LOCAL]
    version.image.save()
    images = run_publish(version, qcow2_artefact, Recorder())
    assert published(images) == sorted((zone, LOCAL) for zone in ZONES)
    for zone in ZONES:
        assert factory_block_snapshots(zone, version.build.pk) == []
        assert len(factory_images(zone, version.build.pk)) == 1


def test_publish_again_reuses_everything(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    first = {
        (li.zone.code, li.storage_type): li.provider_image_id
        for li in run_publish(version, qcow2_artefact, Recorder())
    }
    recorder = Recorder()
    second = {
        (li.zone.code, li.storage_type): li.provider_image_id
        for li in run_publish(version, qcow2_artefact, recorder)
    }
    assert first == second
    assert sorted(first) == EVERY
    assert_one_of_each(version.build.pk)
    assert any("not uploading" in line for line in recorder.lines)


def test_503_on_import_is_retried(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    cloud.fault(operation=SNAPSHOTS_OP, count=2, status=503)
    cloud.fault(operation=BLOCK_IMPORT_OP, count=2, status=503)
    images = run_publish(version, qcow2_artefact, Recorder())
    assert published(images) == EVERY
    assert_one_of_each(version.build.pk)


def test_429_with_retry_after_is_retried_after_the_delay(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    cloud.fault(
        operation="POST /instance/v1/zones/{zone}/images", count=1, status=429, retry_after=1
    )
    started = time.monotonic()
    images = run_publish(version, qcow2_artefact, Recorder())
    assert published(images) == EVERY
    assert time.monotonic() - started >= 1.0
    assert_one_of_each(version.build.pk)


def test_400_fails_the_zone_with_the_api_message(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    cloud.fault(operation=SNAPSHOTS_OP, count=1, status=400, message="Quota exceeded for snapshots")
    recorder = Recorder()
    with pytest.raises(PublishError) as failure:
        run_publish(version, qcow2_artefact, recorder)
    message = str(failure.value)
    assert message.startswith("published 5 of 6 local images (3 zone(s) x 2 storage type(s)); ")
    assert "Quota exceeded for snapshots" in message
    failed = LocalImage.objects.get(version=version, state=LocalImageState.ERROR)
    assert "Quota exceeded for snapshots" in failed.error
    assert failed.storage_type == LOCAL
    assert f"{failed.zone.code} local: " in message
    assert LocalImage.objects.filter(version=version, state="available").count() == 5

    # Rerunning after the failure reuses the five published images and completes the sixth.
    before = {z: sorted(i.id for i in factory_images(z, version.build.pk)) for z in ZONES}
    images = run_publish(version, qcow2_artefact, Recorder())
    assert published(images) == EVERY
    assert_one_of_each(version.build.pk)
    for zone in ZONES:
        found = sorted(i.id for i in factory_images(zone, version.build.pk))
        assert set(before[zone]) <= set(found)


def test_invalid_qcow2_fails_clearly_and_leaves_nothing(
    cloud: Cloud, version: ImageVersion, raw_artefact: Path
) -> None:
    with pytest.raises(PublishError) as failure:
        run_publish(version, raw_artefact, Recorder())
    message = str(failure.value)
    assert message.startswith("published 0 of 6 local images")
    # Both APIs refuse it, each in its own words, per zone and storage type.
    for zone, kind in EVERY:
        assert f"{zone} {'block' if kind == SBS else 'local'}: " in message
    assert message.count("QCOW2") >= 6
    assert cloud.factory_resources() == []
    assert set(LocalImage.objects.values_list("state", flat=True)) == {LocalImageState.ERROR}


def test_slow_create_beyond_the_timeout_is_found_not_duplicated(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path, settings
) -> None:
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 0.5
    cloud.fault(operation=SNAPSHOTS_OP, count=1, delay=2.0, status=200)
    recorder = Recorder()
    images = run_publish(version, qcow2_artefact, recorder)
    assert published(images) == EVERY
    assert_one_of_each(version.build.pk)


def test_waiting_beyond_the_deadline_fails_the_zone(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path, settings
) -> None:
    # Every poll of the snapshot answers late: the import cannot be seen to end in time.
    # (Local storage only: with one attempt and a 0.5 s timeout, any call of the Block path
    # could also time out on a loaded machine, and this test is about the Instance wait.)
    version.image.storage_types = [LOCAL]
    version.image.save()
    settings.PUBLISH_IMPORT_TIMEOUT_SECONDS = 0.3
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 0.5
    settings.CLOUD_RETRY_ATTEMPTS = 1
    cloud.fault(
        operation="GET /instance/v1/zones/{zone}/snapshots/{snapshot_id}",
        count=100,
        delay=1.0,
        status=200,
    )
    with pytest.raises(PublishError) as failure:
        run_publish(version, qcow2_artefact, Recorder())
    assert "published 0 of 3 local images" in str(failure.value)
    assert "no answer from the API within 0.5 s" in str(failure.value)


def test_retry_zone_reuploads_a_missing_object(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    run_publish(version, qcow2_artefact, Recorder())
    zone = Zone.objects.get(code="nl-ams-1")
    api = clients.instance_api()
    local = LocalImage.objects.get(version=version, zone=zone, storage_type=LOCAL)
    api.delete_image(zone="nl-ams-1", image_id=local.provider_image_id)
    api.delete_snapshot(zone="nl-ams-1", snapshot_id=local.snapshot_id)
    discard_objects = cloud.s3("nl-ams")
    for key in cloud.objects("nl-ams", f"image-factory/build-{version.build.pk}/nl-ams/"):
        discard_objects.delete_object(Bucket="factory-test-artefacts", Key=key)

    recorder = Recorder()
    (again,) = retry_zone(version.build.pk, version, zone, storage_types=[LOCAL], log=recorder.log)
    assert again.state == LocalImageState.AVAILABLE
    assert again.storage_type == LOCAL
    assert again.provider_image_id != local.provider_image_id
    images = factory_images("nl-ams-1", version.build.pk)
    assert [i.id for i in images if i.root_volume.volume_type == "l_ssd"] == [
        again.provider_image_id
    ]
    assert any("uploading" in line for line in recorder.lines)
    with pytest.raises(PublishError, match="Unknown storage type"):
        retry_zone(version.build.pk, version, zone, storage_types=["b_ssd"])


QUOTA = {
    "type": "quotas_exceeded",
    "message": "quota(s) exceeded for this resource",
    "details": [{"resource": "sbs_snapshots", "quota": 10, "current": 10}],
}


@pytest.mark.parametrize("status", [403, 409])
def test_a_block_quota_fails_that_zone_and_type_alone_and_leaves_nothing(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path, status: int
) -> None:
    cloud.fault(operation=BLOCK_IMPORT_OP, zone="fr-par-2", count=1, status=status, body=QUOTA)
    with pytest.raises(PublishError) as failure:
        run_publish(version, qcow2_artefact, Recorder())
    message = str(failure.value)
    assert "published 5 of 6 local images" in message
    assert "fr-par-2 block: " in message
    assert "sbs_snapshots: 10 of 10 used" in message
    failed = LocalImage.objects.get(state=LocalImageState.ERROR)
    assert (failed.zone.code, failed.storage_type) == ("fr-par-2", SBS)
    assert "quota" in failed.error
    assert factory_block_snapshots("fr-par-2", version.build.pk) == []
    assert [i.root_volume.volume_type for i in factory_images("fr-par-2", version.build.pk)] == [
        "l_ssd"
    ]
    # Retry of that zone and type alone, once the quota allows it.
    (again,) = retry_zone(
        version.build.pk, version, Zone.objects.get(code="fr-par-2"), storage_types=[SBS]
    )
    assert again.state == LocalImageState.AVAILABLE
    assert_one_of_each(version.build.pk)


def test_a_zone_without_block_storage_fails_there_clearly(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    refusal = {
        "type": "invalid_arguments",
        "message": "invalid argument(s)",
        "details": [
            {
                "argument_name": "zone",
                "reason": "constraint",
                "help_message": "Block Storage is not available in this zone",
            }
        ],
    }
    cloud.fault(operation=BLOCK_IMPORT_OP, zone="nl-ams-1", count=20, status=400, body=refusal)
    with pytest.raises(PublishError) as failure:
        run_publish(version, qcow2_artefact, Recorder())
    message = str(failure.value)
    assert "nl-ams-1 block: " in message
    assert "Block Storage is not available in this zone" in message
    assert LocalImage.objects.filter(state=LocalImageState.AVAILABLE).count() == 5
    assert factory_block_snapshots("nl-ams-1", version.build.pk) == []


def test_cancel_stops_promptly_and_discard_cleans_up(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    # The imports hang (a long delay); cancel must not wait for them. The cancel comes a
    # second after the first import was sent (however long the upload took on this machine).
    cloud.fault(operation=SNAPSHOTS_OP, count=3, delay=15.0, status=200)
    cloud.fault(operation=BLOCK_IMPORT_OP, count=3, delay=15.0, status=200)
    recorder = CancelAfterImport()
    with pytest.raises(Cancelled):
        run_publish(version, qcow2_artefact, recorder)
    assert recorder.cancelled_at is not None
    started = recorder.cancelled_at
    assert time.monotonic() - started < 10.0  # well before the first import returns
    assert not LocalImage.objects.filter(state=LocalImageState.CREATING).exists()
    assert set(LocalImage.objects.values_list("error", flat=True)) == {"Publishing was cancelled."}
    # The abandoned imports still land in the cloud once their delay is over: discard,
    # as the pipeline does for a cancelled build, removes them too.
    # (Their delay is 15 s; a loaded machine takes longer, so wait for them to appear.)
    time.sleep(max(0.0, started + 16.5 - time.monotonic()))
    removed: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        removed += discard(version.build.pk)["snapshots"]
        if removed and not cloud.factory_resources():
            break
        time.sleep(0.5)
    assert removed  # the zones whose import was sent before the cancel
    assert cloud.factory_resources() == []


def test_discard_leaves_nothing(cloud: Cloud, version: ImageVersion, qcow2_artefact: Path) -> None:
    run_publish(version, qcow2_artefact, Recorder())
    assert cloud.factory_resources()
    removed = discard(version.build.pk)
    assert len(removed["images"]) == 6
    assert len(removed["snapshots"]) == 6
    assert sum("(block)" in item for item in removed["snapshots"]) == 3
    assert len(removed["objects"]) == 2
    assert cloud.factory_resources() == []
    assert cloud.objects("fr-par") == []
    assert set(LocalImage.objects.values_list("state", flat=True)) == {LocalImageState.DELETED}


def test_credentials_never_logged_or_stored(
    cloud: Cloud,
    version: ImageVersion,
    qcow2_artefact: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A secret key unlike any id (the default test key equals the project id, which the
    # SDK rightly logs).
    secret_key = "5ec2e7ce-5ec2-4e7c-8ec2-5ec2e7ce5ec2"
    monkeypatch.setenv("SCW_SECRET_KEY", secret_key)
    caplog.set_level(logging.DEBUG)
    cloud.fault(operation=SNAPSHOTS_OP, count=1, status=400, message="refused")
    recorder = Recorder()
    with pytest.raises(PublishError) as failure:
        run_publish(version, qcow2_artefact, recorder)
    rows = serializers.serialize("json", [*LocalImage.objects.all(), *ImageVersion.objects.all()])
    ours = "\n".join([*recorder.lines, str(failure.value), rows])
    ours_logged = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("cloud", "builds"))
    )
    for secret in (secret_key, ACCESS_KEY):
        assert secret not in ours
        assert secret not in ours_logged
    # Not even the SDK's or boto's debug logs carry the secret key.
    assert secret_key not in caplog.text
