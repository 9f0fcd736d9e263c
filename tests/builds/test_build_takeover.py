"""A build whose worker is killed (kill -9 of its process group) in the middle of a stage is
taken over by another worker once its lease expires, and resumes at the right stage: it
never repeats a finished stage whose results are still usable, publishes no duplicate image
or snapshot in any zone, and adopts the test runs the dead worker had started.

The dead worker is a real process (tests/builds/killable_worker.py) running the real
pipeline on the test's database, against a real local upstream and localcloud (timer
backend: no VM); the worker that takes over is this test process, called as the `long`
cluster would after `requeue_stale_builds` sent the build again. The plan tests at the top
check which stages a takeover runs, from the stage rows alone.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from builds import pipeline, tasks
from builds.choices import BuildState, CheckState, StageName, StageState, TestRunState
from builds.models import Build, CheckResult, Stage, TestRun, TestRunResource
from builds.queue import request_build
from catalog.choices import LocalImageState, StorageType, VersionState
from catalog.models import LocalImage, Zone
from cloud import clients, tags
from tests.builds import killable_worker
from tests.builds.factories import DEMO_FILE, demo_image, serve_demo_file
from tests.builds.upstream_server import UpstreamServer
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ZONES, Cloud

pytestmark = pytest.mark.django_db(transaction=True)

FILE = DEMO_FILE
IMAGES_OP = "POST /instance/v1/zones/{zone}/images"
STARTED = re.compile(r"^\w+ started on (?P<worker>\S+)$")
ORDER = [str(name) for name in StageName.values]


# --- which stages a takeover runs ----------------------------------------------------------


def _build_with_stages(image, tmp_path: Path, done: list[str], files: dict[str, bool]) -> Build:
    """A running build whose `done` stages are done, with outputs pointing at files in
    tmp_path that exist or not (`files`: stage -> exists)."""
    build = Build.objects.create(image=image, state=BuildState.PUBLISHING)
    build.ensure_stages()
    keys = {"fetch": "path", "customize": "work_path", "finalize": "path"}
    for name in done:
        outputs: dict = {"zones": {}} if name in ("publish", "test") else {}
        if name in keys:
            path = tmp_path / f"{name}.qcow2"
            if files.get(name, True):
                path.write_bytes(b"x")
            outputs[keys[name]] = str(path)
        Stage.objects.filter(build=build, name=name).update(state=StageState.DONE, outputs=outputs)
    return build


def _plan(build: Build) -> dict[str, str]:
    return pipeline._stages_to_run(list(build.stages.order_by("position")))


@pytest.fixture
def plain_image(db):
    return os_image("debian_plan")


def test_a_takeover_after_finalize_resumes_at_publish_though_the_scratch_disk_is_gone(
    plain_image, tmp_path
) -> None:
    build = _build_with_stages(
        plain_image, tmp_path, ["fetch", "customize", "finalize"], {"customize": False}
    )
    assert _plan(build) == {"publish": "", "test": ""}


def test_a_done_stage_whose_outputs_are_gone_runs_again_when_a_pending_stage_needs_them(
    plain_image, tmp_path
) -> None:
    build = _build_with_stages(plain_image, tmp_path, ["fetch", "customize"], {"customize": False})
    plan = _plan(build)
    assert set(plan) == {"customize", "finalize", "publish", "test"}
    assert plan["customize"] == "its outputs are gone and Finalize needs them"
    # The fetched file is there: customize's overlay is made on it again, no download.
    assert "fetch" not in plan


def test_a_stage_made_from_outputs_made_again_runs_again_too(plain_image, tmp_path) -> None:
    # The overlay is there but the file under it is gone: fetch runs again, and so does
    # customize, whose disk was an overlay on the old file.
    build = _build_with_stages(plain_image, tmp_path, ["fetch", "customize"], {"fetch": False})
    plan = _plan(build)
    assert set(plan) == {"fetch", "customize", "finalize", "publish", "test"}
    assert plan["fetch"] == "its outputs are gone and Finalize needs them"
    assert plan["customize"] == "it reads what Fetch makes, which runs again"


def test_outputs_nobody_needs_any_more_are_not_looked_at(plain_image, tmp_path) -> None:
    build = _build_with_stages(
        plain_image,
        tmp_path,
        ["fetch", "customize", "finalize", "publish"],
        {"fetch": False, "customize": False, "finalize": False},
    )
    assert _plan(build) == {"test": ""}


# --- killing the worker in each stage ------------------------------------------------------


@pytest.fixture
def shared(transactional_db, tmp_path: Path):
    """The test's database, where the worker process reaches it too."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the worker process shares SQLite's in-memory test database through a file")
    with killable_worker.shared_database(tmp_path) as env:
        yield env


@pytest.fixture
def factory(shared, settings, tmp_path: Path, cloud: Cloud, monkeypatch):
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.BUILD_HEARTBEAT_SECONDS = 1
    # This process takes over: customize's engine is the stand-in here too (no appliance).
    monkeypatch.setattr("builds.customize.customize", killable_worker.customize_stand_in)
    return shared


@pytest.fixture(scope="session")
def upstream_qcow2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QCOW2 of 1 GiB (the smallest volume a snapshot import accepts), 1 MiB written."""
    path = tmp_path_factory.mktemp("upstream") / FILE
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1G"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def image(factory, upstream: UpstreamServer, upstream_qcow2: Path):
    serve_demo_file(upstream, upstream_qcow2, FILE)
    return demo_image(upstream)


def _wait_for(
    ready: Callable[[], bool], worker: subprocess.Popen, what: str, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if worker.poll() is not None:
            pytest.fail(f"the worker ended ({worker.returncode}) before {what}")
        time.sleep(0.2)
    pytest.fail(f"the worker never reached {what}")


def _stage_log(build: Build, name: str) -> list[str]:
    return list(Stage.objects.get(build=build, name=name).log_lines.values_list("text", flat=True))


def _started(build: Build) -> dict[str, list[str]]:
    """For each stage, the workers that started it, in order."""
    return {
        name: [m["worker"] for line in _stage_log(build, name) if (m := STARTED.match(line))]
        for name in ORDER
    }


def _kill_and_expire(build: Build, worker: subprocess.Popen) -> str:
    """kill -9 the worker, then let its lease expire; return the dead worker's name."""
    from django.conf import settings

    killable_worker.kill(worker)
    build.refresh_from_db()
    stale = timezone.now() - dt.timedelta(seconds=settings.BUILD_LEASE_SECONDS + 1)
    Build.objects.filter(pk=build.pk).update(heartbeat_at=stale)
    return build.claimed_by


def _take_over(build: Build) -> str:
    """What the schedule and the `long` cluster do: send the build again, run the task."""
    assert tasks.requeue_stale_builds() == 1
    return tasks.run_build(build.pk)


def _factory_items(zone: str, build_id: int) -> tuple[list[str], list[str]]:
    """The ids of the build's images and snapshots in a zone."""
    api, tag = clients.instance_api(), tags.build_tag(build_id)
    images = [i.id for i in api.list_images_all(zone=zone) if tag in (i.tags or [])]
    snapshots = [s.id for s in api.list_snapshots_all(zone=zone) if tag in (s.tags or [])]
    return images, snapshots


def _assert_published_once(build: Build, zones: tuple[str, ...]) -> None:
    """In every zone, one image of the build per storage type and one snapshot under each
    (an Instance snapshot under the local image, a Block snapshot under the Block Storage
    one), the ones its version records."""
    for code in zones:
        images, snapshots = _factory_items(code, build.pk)
        found = {
            li.storage_type: li
            for li in LocalImage.objects.filter(version=build.version, zone__code=code)
        }
        assert set(found) == set(StorageType.values), (code, found)
        assert all(li.state == LocalImageState.AVAILABLE for li in found.values())
        assert sorted(images) == sorted(li.provider_image_id for li in found.values()), code
        assert snapshots == [found[StorageType.LOCAL].snapshot_id], (code, snapshots)
        block = [s.id for s in tags.find_block_snapshots(clients.block_api(), code, build.pk)]
        assert block == [found[StorageType.SBS].snapshot_id], (code, block)


def _enable(zones: tuple[str, ...]) -> None:
    for code in zones:
        Zone.objects.create(code=code, enabled=True)


# Each case: the stage the worker is killed in, and the stages the worker taking over runs
# (the test stage is one too, switched off outside the test case: it only logs so).
TAKEOVERS = {
    "fetch": ["fetch", "customize", "finalize", "publish", "test"],
    "customize": ["customize", "finalize", "publish", "test"],
    "finalize": ["finalize", "publish", "test"],
    "publish": ["publish", "test"],
}


@pytest.mark.parametrize("stage", list(TAKEOVERS))
def test_a_worker_killed_in_a_stage_is_taken_over_at_that_stage(
    stage: str, image, factory, upstream: UpstreamServer, cloud: Cloud, settings, tmp_path
) -> None:
    zones = ZONES
    _enable(zones)
    build = request_build(image, "x86_64").build
    hang_in = stage if stage in ("customize", "finalize") else ""
    if stage == "fetch":
        # The download stalls half-way: the worker is killed while it waits for bytes.
        upstream.fail("stall", after_bytes=512 * 1024, times=1, path=f"/{FILE}")
    snapshots: dict[str, str] = {}
    if stage == "publish":
        # Image creation is refused for now (429) in every zone: the worker is killed once
        # every zone's snapshot is imported, while it waits to create the images.
        settings.CLOUD_RETRY_ATTEMPTS = 100000
        settings.CLOUD_RETRY_MAX_SECONDS = 0.5
        cloud.fault(operation=IMAGES_OP, count=100000, status=429, retry_after=1)
    worker = killable_worker.start_worker(
        build.pk, factory, tmp_path / "worker.log", hang_in=hang_in
    )

    def ready() -> bool:
        lines = _stage_log(build, stage)
        if stage == "fetch":
            fetch = Stage.objects.get(build=build, name=stage)
            return fetch.state == StageState.RUNNING and fetch.progress_total is not None
        if stage == "publish":
            for line in lines:
                if found := re.match(r"^(\S+) local: snapshot (\S+) available$", line):
                    snapshots[found[1]] = found[2]
            return set(snapshots) == set(zones)
        return killable_worker.HANGING in lines

    try:
        _wait_for(ready, worker, f"the middle of {stage}")
    finally:
        dead = _kill_and_expire(build, worker)
    cloud.process.operator("DELETE", "faults")
    settings.CLOUD_RETRY_ATTEMPTS = 5
    downloads = len(upstream.requests_for(FILE))

    assert _take_over(build) == BuildState.DONE, build.failure_reason

    build.refresh_from_db()
    me = tasks.worker_name()
    assert dead and dead != me
    assert build.attempts == 2
    started = _started(build)
    before = ORDER[: ORDER.index(stage) + 1]
    for name in ORDER:
        expected = ([dead] if name in before else []) + ([me] if name in TAKEOVERS[stage] else [])
        assert started[name] == expected, (name, started)
    for name in ORDER:
        assert Stage.objects.get(build=build, name=name).state == StageState.DONE
    if stage != "fetch":
        assert len(upstream.requests_for(FILE)) == downloads, "the fetched file was reused"
    assert build.version.state == VersionState.PUBLISHED
    assert Path(build.version.artefact_path).is_file()
    _assert_published_once(build, zones)
    if stage == "publish":
        # The snapshots the dead worker imported are the ones published, not imports again.
        for code, snapshot_id in snapshots.items():
            local = LocalImage.objects.get(
                version=build.version, zone__code=code, storage_type=StorageType.LOCAL
            )
            assert local.snapshot_id == snapshot_id
        publish_log = _stage_log(build, "publish")
        assert sum("already holds this artefact; not uploading" in x for x in publish_log) == 2


def test_a_worker_killed_in_the_test_stage_is_taken_over_and_its_runs_adopted(
    image, factory, upstream: UpstreamServer, cloud: Cloud, settings, tmp_path
) -> None:
    zones = ("fr-par-1",)
    _enable(zones)
    settings.BUILD_TEST_STAGE = True
    settings.TEST_BOOT_TIMEOUT_SECONDS = 2  # the timer backend's servers never answer
    settings.TEST_ACTION_TIMEOUT_SECONDS = 30
    settings.TEST_CHECK_CONCURRENCY = 6
    build = request_build(image, "x86_64").build
    worker = killable_worker.start_worker(build.pk, factory, tmp_path / "worker.log")

    def ready() -> bool:
        # A check has ended, and others have servers in the cloud.
        return (
            CheckResult.objects.filter(
                test_run__build=build, state__in=[CheckState.FAILED, CheckState.ERROR]
            ).exists()
            and TestRunResource.objects.filter(test_run__build=build, kind="server").exists()
        )

    try:
        _wait_for(ready, worker, "the middle of the test stage")
    finally:
        dead = _kill_and_expire(build, worker)
    # One run per storage type the version is published with in the zone.
    runs = list(TestRun.objects.filter(build=build).order_by("pk"))
    assert sorted(r.storage_type for r in runs) == sorted(StorageType.values)
    ended: dict[int, dict[str, Any]] = {}
    for run in runs:
        assert run.state == TestRunState.RUNNING and run.claimed_by == dead
        ended[run.pk] = {
            r.check_name: r.finished_at
            for r in run.results.exclude(state__in=[CheckState.PENDING, CheckState.RUNNING])
        }
    left = set(
        TestRunResource.objects.filter(test_run__in=runs).values_list("resource_id", flat=True)
    )
    assert any(ended.values()) and left
    # The runs' leases expired with the worker; the schedule leaves them to their build.
    TestRun.objects.filter(build=build).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert tasks.requeue_stale_test_runs() == 0

    assert _take_over(build) == BuildState.DONE, build.failure_reason

    build.refresh_from_db()
    me = tasks.worker_name()
    started = _started(build)
    for name in ORDER:
        assert started[name] == [dead] + ([me] if name == "test" else []), (name, started)
    # The dead worker's runs were adopted: no second run for the version, zone and storage.
    assert list(
        TestRun.objects.filter(version=build.version).order_by("pk").values_list("pk", flat=True)
    ) == [r.pk for r in runs]
    assert "Adopting the test run(s) left active by an earlier worker: " in "\n".join(
        _stage_log(build, "test")
    )
    for run in runs:
        run.refresh_from_db()
        assert run.state == TestRunState.FINISHED and run.claimed_by == ""
        results = {r.check_name: r for r in run.results.all()}
        for name, finished_at in ended[run.pk].items():
            assert results[name].finished_at == finished_at, f"{name} ran again"
            assert "(taken over by another worker)" not in results[name].log
        again = [r for name, r in results.items() if name not in ended[run.pk]]
        assert again and all(r.state in (CheckState.FAILED, CheckState.ERROR) for r in again)
        assert any(f"taken over from worker {dead}" in r.log for r in again)
        # What the dead worker created is gone, and nothing of the run is left.
        assert not TestRunResource.objects.filter(test_run=run).exists()
        tag = tags.run_tag(run.pk)
        assert not [
            item
            for items in cloud.inventory().values()
            for item in items
            if isinstance(item, dict) and tag in (item.get("tags") or [])
        ]
    _assert_published_once(build, zones)
    assert build.version.state == VersionState.TEST_FAILED
