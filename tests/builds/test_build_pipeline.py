"""Whole builds with real libguestfs on the real small Debian image, served by a real
local upstream: from the Rebuild click to a version with its package manifest and diff.

The second build's recipe uses every step type, with a real package from Debian's mirror and a
recipe secret, and its published image is read back: the steps' effects and the never-booted
clean-up are checked in the image customers would get."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from builds import tasks
from builds.choices import BuildState, StageName, StageState
from builds.models import StageLogLine
from builds.queue import request_build
from builds.stages.files import work_dir
from catalog.choices import VersionState
from catalog.models import LocalImage, RecipeStep, Zone
from tests.builds.readback import read_back
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


SECRET = "s3cr3t-Value-42"
# An immutable file in Debian's pool (the only outside host the test machines reach).
HELLO_DEB_URL = "http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
HELLO_DEB_SHA256 = "2e6e2f1a0007dc43bc91c273fd36e91e40a4f1c2765a03eca68b70a42103878a"


def add_every_step_type(image, folder, settings, monkeypatch) -> None:
    """After the demo's motd step: one step of each other kind, a secret and a real package."""
    files = folder / "files"
    files.mkdir()
    (files / "motd.txt").write_text("uploaded by the factory\n")
    settings.FILES_DIR = files
    settings.RECIPE_SECRETS = ["TEST_TOKEN"]
    settings.UPSTREAM_ALLOWED_HOSTS = [*settings.UPSTREAM_ALLOWED_HOSTS, "deb.debian.org"]
    monkeypatch.setenv("TEST_TOKEN", SECRET)
    steps = [
        ("install_packages", {"packages": ["hello"]}),
        ("upload_file", {"source": "motd.txt", "destination": "/etc/motd-extra", "mode": "0640"}),
        ("write_file", {"path": "/etc/factory/token", "content": "token=${secret:TEST_TOKEN}\n"}),
        ("enable_unit", {"unit": "systemd-networkd.service"}),
        ("run_command", {"command": "echo using ${secret:TEST_TOKEN}; "
                                    "hello > /root/hello.out"}),
        ("firstboot_script", {"script": "#!/bin/sh\necho first boot\n"}),
        ("download_file", {"url": HELLO_DEB_URL, "sha256": HELLO_DEB_SHA256,
                           "destination": "/opt/"}),
    ]  # fmt: skip
    for position, (kind, params) in enumerate(steps, start=2):
        RecipeStep.objects.create(image=image, position=position, type=kind, params=params)


def assert_every_step_applied(build) -> None:
    stage = build.stages.get(name=StageName.CUSTOMIZE)
    assert (stage.progress_done, stage.progress_total, stage.progress_unit) == (8, 8, "steps")
    assert stage.outputs["os_info"]["distro"] == "debian"
    assert stage.outputs["os_info"]["major"] == 12
    assert stage.outputs["os_info"]["package_management"] == "apt"
    lines = list(
        StageLogLine.objects.filter(stage__build=build)
        .order_by("id")
        .values_list("text", flat=True)
    )
    assert any("hello" in line and "Unpacking" in line for line in lines)
    assert "using ***" in lines
    assert not any(SECRET in line for line in lines)
    version = build.version
    names = [p["name"] for p in version.manifest]
    assert names == sorted(names)
    hello = {"name": "hello", "version": "2.10-3", "arch": "amd64", "source": "hello"}
    assert {**hello, "source_version": "2.10-3"} in version.manifest
    # The upstream image's own list, read before the first step: the recipe added hello.
    upstream = {p["name"] for p in stage.outputs["upstream_manifest"]}
    assert "hello" not in upstream and "systemd" in upstream

    image = read_back(Path(version.artefact_path))
    assert image["etc_motd"] == "Built by the image factory\n"
    assert image["hello_binary"]
    assert image["hello_out"] == "Hello, world!\n"
    assert image["motd"] == "uploaded by the factory\n"
    assert image["motd_mode"] == 0o640
    assert image["token"] == f"token={SECRET}\n"
    assert image["networkd_wanted"]
    assert image["firstboot_wanted"]
    assert "ExecStartPost=/bin/systemctl disable" in image["firstboot_unit"]
    # Never booted: no identity, no keys, no caches, leases, history or logs left behind.
    assert image["machine_id_exists"] and image["machine_id_size"] == 0
    assert not image["dbus_machine_id"]
    assert image["host_keys"] == []
    assert image["resolv_is_link"]
    assert image["resolv_target"] == "../run/systemd/resolve/stub-resolv.conf"
    assert image["debs"] == [] and image["pkgcache"] == []
    assert not image["history"]
    assert image["leases"] == []
    assert image["fixture_log_size"] == 0
    assert image["log_dir_kept"]
    assert not image["work_dir"]
    assert image["downloaded_size"] == 53080


def test_a_build_produces_a_version_and_a_second_one_shows_what_changed(
    client, viewer, factory_dirs, cloud, upstream, demo_image, settings, monkeypatch
) -> None:
    first = request_build(demo_image, "x86_64").build
    assert tasks.run_build(first.pk) == BuildState.DONE, first.failure_reason
    first.refresh_from_db()
    version = first.version
    assert version is not None and version.state == VersionState.PUBLISHED
    # Published as an image in every enabled zone on both storage types, seen through the
    # real SDK (the Block Storage one over a Block snapshot).
    from cloud import clients

    local = {
        (li.zone.code, li.storage_type): li for li in LocalImage.objects.filter(version=version)
    }
    assert set(local) == {(z, t) for z in ZONES for t in ("instance_local", "instance_sbs")}
    for (code, kind), li in local.items():
        assert li.state == "available"
        image = clients.instance_api().get_image(zone=code, image_id=li.provider_image_id).image
        assert image.state == "available"
        roots = "sbs_snapshot" if kind == "instance_sbs" else "l_ssd"
        assert image.root_volume.volume_type == roots
    # One upload per region (moto's endpoints share one store: tell them apart by key).
    keys = cloud.objects("fr-par")
    assert sorted(k.split("/")[2] for k in keys) == ["fr-par", "nl-ams"], keys
    assert version.upstream_serial == "20261126-1"
    assert {p["name"] for p in version.manifest} >= {"openssh-server", "systemd"}
    # Each package with the source package it was built from, as dpkg-query says in the guest.
    packages = {p["name"]: p for p in version.manifest}
    assert packages["libc6"]["source"] == "glibc"
    assert packages["libc6"]["source_version"] == packages["libc6"]["version"]
    assert packages["openssh-server"]["source"] == "openssh"
    assert StageLogLine.objects.filter(
        stage__build=first, text__startswith="Package sources: known for"
    ).exists()
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", version.artefact_path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"format": "qcow2"' in info and "backing-filename" not in info
    assert sha256_file(Path(version.artefact_path)) == version.artefact_sha256
    assert not work_dir(first).exists()
    for stage in first.stages.all():
        assert stage.state == StageState.DONE and stage.started_at and stage.finished_at

    add_every_step_type(demo_image, factory_dirs, settings, monkeypatch)
    second = request_build(demo_image, "x86_64").build
    assert tasks.run_build(second.pk) == BuildState.DONE, second.failure_reason
    second.refresh_from_db()
    # Named by the day it was built: the same day's second version gets "-2" (a run that
    # crosses midnight names it by the new day instead).
    assert second.version.name != version.name
    if second.version.name.startswith(version.name):
        assert second.version.name == f"{version.name}-2"
    assert len(upstream.requests_for(FILE)) == 1, "the second build reused the cached download"
    assert_every_step_applied(second)

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
