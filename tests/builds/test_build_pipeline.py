"""Whole builds with real libguestfs on the real small Debian image, served by a real
local upstream: from the Rebuild click to a version with its package manifest and diff."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from builds import tasks
from builds.choices import BuildState, StageName, StageState
from builds.queue import request_build
from builds.stages.files import work_dir
from catalog.choices import VersionState
from catalog.models import LocalImage, RecipeStep, Zone
from tests.builds.upstream_server import LOCAL_DEMO_FILE as FILE
from tests.builds.upstream_server import UpstreamServer, local_demo_image, sha256_file
from tests.cloud.localcloud import ZONES

pytestmark = [pytest.mark.guestfs, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def factory_dirs(settings, tmp_path, cloud):
    """Work folders in tmp_path, the local upstream allowed, and localcloud with three
    enabled zones over two regions to publish to."""
    for code in ZONES:
        Zone.objects.create(code=code, enabled=True)
    settings.PUBLISH_IMPORT_TIMEOUT_SECONDS = 300
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.BUILD_HEARTBEAT_SECONDS = 1
    return tmp_path


@pytest.fixture
def demo_image(upstream: UpstreamServer, debian_qcow2):
    return local_demo_image(upstream, debian_qcow2, "20261126-1", "Built by the image factory\n")


def _guestfs_cat(path, file: str) -> str:
    done = subprocess.run(
        ["virt-cat", "--format=qcow2", "-a", str(path), file],
        capture_output=True,
        text=True,
        env={"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    return done.stdout


def test_a_build_produces_a_version_and_a_second_one_shows_what_changed(
    client, viewer, factory_dirs, cloud, upstream, demo_image
) -> None:
    first = request_build(demo_image, "x86_64").build
    assert tasks.run_build(first.pk) == BuildState.DONE, first.failure_reason
    first.refresh_from_db()
    version = first.version
    assert version is not None and version.state == VersionState.PUBLISHED
    # Published as an image in every enabled zone, seen through the real SDK.
    from cloud import clients

    local = {li.zone.code: li for li in LocalImage.objects.filter(version=version)}
    assert set(local) == set(ZONES)
    for code, li in local.items():
        assert li.state == "available"
        image = clients.instance_api().get_image(zone=code, image_id=li.provider_image_id).image
        assert image.state == "available"
    # One upload per region (moto's endpoints share one store: tell them apart by key).
    keys = cloud.objects("fr-par")
    assert sorted(k.split("/")[2] for k in keys) == ["fr-par", "nl-ams"], keys
    assert version.upstream_serial == "20261126-1"
    assert {p["name"] for p in version.manifest} >= {"openssh-server", "systemd"}
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", version.artefact_path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"format": "qcow2"' in info and "backing-filename" not in info
    assert sha256_file(__import__("pathlib").Path(version.artefact_path)) == version.artefact_sha256
    assert "image factory" in _guestfs_cat(version.artefact_path, "/etc/motd")
    assert not work_dir(first).exists()
    for stage in first.stages.all():
        assert stage.state == StageState.DONE and stage.started_at and stage.finished_at

    RecipeStep.objects.create(
        image=demo_image, position=2, type="install_packages", params={"packages": ["hello"]}
    )
    second = request_build(demo_image, "x86_64").build
    assert tasks.run_build(second.pk) == BuildState.DONE, second.failure_reason
    second.refresh_from_db()
    assert second.version.name.endswith("-2")
    assert len(upstream.requests_for(FILE)) == 1, "the second build reused the cached download"

    client.force_login(viewer)
    page = client.get(second.version.get_absolute_url()).content.decode()
    assert "hello" in page and 'class="diff-added"' in page
    image_page = client.get(demo_image.get_absolute_url()).content.decode()
    assert second.version.name in image_page


def test_cancel_stops_the_appliance_within_seconds_and_leaves_nothing(
    factory_dirs, cloud, demo_image, our_qemu_pids
) -> None:
    RecipeStep.objects.create(
        image=demo_image, position=2, type="run_command", params={"command": "sleep 600"}
    )
    build = request_build(demo_image, "x86_64").build
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(tasks.run_build(build.pk)))
    runner.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        build.refresh_from_db()
        if (
            build.stages.get(name=StageName.CUSTOMIZE)
            .log_lines.filter(text__contains="sleep 600")
            .exists()
        ):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the sleep step never started")
    assert build.request_cancel()
    runner.join(timeout=120)
    assert not runner.is_alive(), "cancel did not stop the build"
    assert outcome == [BuildState.CANCELLED]
    assert not work_dir(build).exists()
    assert not list((factory_dirs / "artefacts").rglob("*.qcow2"))
    assert our_qemu_pids() == set()
    assert cloud.factory_resources() == []
