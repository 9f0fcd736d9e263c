"""Publishing through the real Scaleway SDK and boto3 against a real localcloud subprocess:
one upload per region, images in three zones of two regions, every class of API error,
resuming without duplicates, cancel, discard, and no credential in logs or rows."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from django.core import serializers

from builds.models import Build
from builds.publish import PublishError, discard, publish, retry_zone
from catalog.choices import LocalImageState
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients
from cloud.cancel import Cancelled
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ACCESS_KEY, ZONES, Cloud

SNAPSHOTS_OP = "POST /instance/v1/zones/{zone}/snapshots"


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


def test_publish_in_three_zones_of_two_regions(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    recorder = Recorder()
    images = run_publish(version, qcow2_artefact, recorder)

    build_id = version.build.pk
    assert sorted(li.zone.code for li in images) == sorted(ZONES)  # pl-waw-1 is disabled
    for li in images:
        assert li.state == LocalImageState.AVAILABLE
        found = factory_images(li.zone.code, build_id)
        assert [i.id for i in found] == [li.provider_image_id]
        assert found[0].state == "available"
        assert found[0].root_volume.id == li.snapshot_id
        assert set(found[0].tags) == {"image-factory", f"build:{build_id}"}
        assert found[0].name == "debian-bookworm-2026-11-26-x86-64"
    assert factory_images("pl-waw-1", build_id) == []
    # One upload per region: one object in each region's part of the bucket.
    keys = cloud.objects("fr-par")  # moto shares one store between the regions' endpoints
    assert sorted(keys) == [
        f"image-factory/build-{build_id}/fr-par/2026-11-26-x86_64.qcow2",
        f"image-factory/build-{build_id}/nl-ams/2026-11-26-x86_64.qcow2",
    ]
    size = qcow2_artefact.stat().st_size
    assert recorder.progress[-1] == (2 * size, 2 * size, "bytes")
    assert any("fr-par-2: image" in line for line in recorder.lines)


def test_publish_again_reuses_everything(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    first = {
        li.zone.code: li.provider_image_id
        for li in run_publish(version, qcow2_artefact, Recorder())
    }
    recorder = Recorder()
    second = {
        li.zone.code: li.provider_image_id for li in run_publish(version, qcow2_artefact, recorder)
    }
    assert first == second
    for zone in ZONES:
        assert len(factory_images(zone, version.build.pk)) == 1
        assert len(factory_snapshots(zone, version.build.pk)) == 1
    assert any("not uploading" in line for line in recorder.lines)


def test_503_on_import_is_retried(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    cloud.fault(operation=SNAPSHOTS_OP, count=2, status=503)
    images = run_publish(version, qcow2_artefact, Recorder())
    assert len(images) == 3
    for zone in ZONES:
        assert len(factory_snapshots(zone, version.build.pk)) == 1


def test_429_with_retry_after_is_retried_after_the_delay(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    cloud.fault(
        operation="POST /instance/v1/zones/{zone}/images", count=1, status=429, retry_after=1
    )
    started = time.monotonic()
    images = run_publish(version, qcow2_artefact, Recorder())
    assert len(images) == 3
    assert time.monotonic() - started >= 1.0
    for zone in ZONES:
        assert len(factory_images(zone, version.build.pk)) == 1


def test_400_fails_the_zone_with_the_api_message(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    cloud.fault(operation=SNAPSHOTS_OP, count=1, status=400, message="Quota exceeded for snapshots")
    recorder = Recorder()
    with pytest.raises(PublishError) as failure:
        run_publish(version, qcow2_artefact, recorder)
    message = str(failure.value)
    assert message.startswith("published in 2 of 3 zones; ")
    assert "Quota exceeded for snapshots" in message
    failed = LocalImage.objects.get(version=version, state=LocalImageState.ERROR)
    assert "Quota exceeded for snapshots" in failed.error
    assert failed.zone.code in message
    assert LocalImage.objects.filter(version=version, state="available").count() == 2

    # Rerunning after the failure reuses the two published zones and completes the third.
    before = {z: [i.id for i in factory_images(z, version.build.pk)] for z in ZONES}
    images = run_publish(version, qcow2_artefact, Recorder())
    assert len(images) == 3
    for zone in ZONES:
        found = [i.id for i in factory_images(zone, version.build.pk)]
        assert len(found) == 1
        if before[zone]:
            assert found == before[zone]


def test_invalid_qcow2_fails_clearly_and_leaves_nothing(
    cloud: Cloud, version: ImageVersion, raw_artefact: Path
) -> None:
    with pytest.raises(PublishError) as failure:
        run_publish(version, raw_artefact, Recorder())
    message = str(failure.value)
    assert message.startswith("published in 0 of 3 zones; ")
    assert "not a valid QCOW2" in message
    assert cloud.factory_resources() == []
    assert set(LocalImage.objects.values_list("state", flat=True)) == {LocalImageState.ERROR}


def test_slow_create_beyond_the_timeout_is_found_not_duplicated(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path, settings
) -> None:
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 0.5
    cloud.fault(operation=SNAPSHOTS_OP, count=1, delay=2.0, status=200)
    recorder = Recorder()
    images = run_publish(version, qcow2_artefact, recorder)
    assert len(images) == 3
    for zone in ZONES:
        assert len(factory_snapshots(zone, version.build.pk)) == 1
        assert len(factory_images(zone, version.build.pk)) == 1


def test_waiting_beyond_the_deadline_fails_the_zone(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path, settings
) -> None:
    # Every poll of the snapshot answers late: the import cannot be seen to end in time.
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
    assert "published in 0 of 3 zones" in str(failure.value)
    assert "no answer from the API within 0.5 s" in str(failure.value)


def test_retry_zone_reuploads_a_missing_object(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    run_publish(version, qcow2_artefact, Recorder())
    zone = Zone.objects.get(code="nl-ams-1")
    api = clients.instance_api()
    local = LocalImage.objects.get(version=version, zone=zone)
    api.delete_image(zone="nl-ams-1", image_id=local.provider_image_id)
    api.delete_snapshot(zone="nl-ams-1", snapshot_id=local.snapshot_id)
    discard_objects = cloud.s3("nl-ams")
    for key in cloud.objects("nl-ams", f"image-factory/build-{version.build.pk}/nl-ams/"):
        discard_objects.delete_object(Bucket="factory-test-artefacts", Key=key)

    recorder = Recorder()
    again = retry_zone(version.build.pk, version, zone, log=recorder.log)
    assert again.state == LocalImageState.AVAILABLE
    assert again.provider_image_id != local.provider_image_id
    assert [i.id for i in factory_images("nl-ams-1", version.build.pk)] == [again.provider_image_id]
    assert any("uploading" in line for line in recorder.lines)


def test_cancel_stops_promptly_and_discard_cleans_up(
    cloud: Cloud, version: ImageVersion, qcow2_artefact: Path
) -> None:
    # The imports hang (a long delay); cancel must not wait for them. The cancel comes a
    # second after the first import was sent (however long the upload took on this machine).
    cloud.fault(operation=SNAPSHOTS_OP, count=3, delay=15.0, status=200)
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
    assert len(removed["images"]) == 3
    assert len(removed["snapshots"]) == 3
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
