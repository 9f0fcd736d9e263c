"""Test runs on real VMs: localcloud with the QEMU machine backend, the real Scaleway SDK,
servers booted from the bootable fixture image published by the product's publish code, and
SSH into them.

- all twelve checks in one zone pass on servers booted with UEFI (DNS: not applicable for the
  server's own public name, which localcloud does not publish) and nothing the run created is
  left in the cloud, on each storage type the version is published with: local storage
  (DEV1-S, l_ssd roots) and Block Storage (PLAY2-PICO, Block roots, Block snapshots; Archive
  there cannot see the node's release: localcloud shows no server location);
- a broken image (sshd masked) with short deadlines: every check gets a result that says why,
  and keep-resources-on-failure leaves the failed checks' servers in place and lists them;
- a server that cannot start fails its checks at once with the cloud's reason.

Marked `extra` (make test-extra, not in CI): a subset in two zones at once, the broken
image with every check, and a second broken image (no network configuration).
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from django.db import connection

from builds.choices import CheckState, TestRunState
from builds.models import CheckResult, TestRun
from builds.testing import registry
from builds.testing.harness import SHARED
from builds.testing.ledger import Apis, Entry, delete
from builds.testing.orchestration import verdict
from builds.testing.runner import run_test_run
from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients
from tests.builds.testing.vmcloud import (
    VmCloudProcess,
    configure,
    new_resources,
    resource_ids,
    tagged,
    version_for,
)
from tests.catalog.factories import os_image
from tests.localcloud.conftest import import_image

pytestmark = [pytest.mark.vm, pytest.mark.django_db(transaction=True)]

WORKER = "vm-tests"
ZONE = "fr-par-1"
ZONES = ("fr-par-1", "fr-par-2")
# A broken image never answers: the deadline only sets how long its checks wait to say so.
BROKEN_BOOT_TIMEOUT_S = 30


@pytest.fixture
def vm(settings, monkeypatch: pytest.MonkeyPatch) -> VmCloudProcess:
    return configure(settings, monkeypatch)


BOTH = (StorageType.LOCAL, StorageType.SBS)


def new_run(version: ImageVersion, zone: str, **fields: object) -> TestRun:
    return TestRun.objects.create(version=version, zone=Zone.objects.get(code=zone), **fields)


def results(run: TestRun) -> dict[str, CheckResult]:
    return {r.check_name: r for r in CheckResult.objects.filter(test_run=run)}


def summary(run: TestRun) -> str:
    """One line per check (state, seconds, reason), for the test's output and failures."""
    where = f"{run.zone.code} on {run.get_storage_type_display()}"
    lines = [f"test run #{run.pk} in {where}: {run.state} {run.error}".rstrip()]
    for name, result in results(run).items():
        lines.append(
            f"  {name:<17} {result.state:<15} {result.duration or 0:>6.0f} s  {result.reason}"
        )
    return "\n".join(lines)


def logs(run: TestRun, names: list[str] | None = None) -> str:
    return "\n".join(
        f"--- {name} ---\n{result.log[-6000:]}"
        for name, result in results(run).items()
        if names is None or name in names
    )


def assert_nothing_left(cloud: VmCloudProcess, run: TestRun, before: dict[str, set[str]]) -> None:
    assert tagged(cloud, f"test-run:{run.pk}") == []
    assert new_resources(before, resource_ids(cloud)) == {}


def run_in_threads(runs: list[TestRun]) -> tuple[dict[int, str], float]:
    """Run the test runs at once, one thread each as a build does; their states and the wall
    time."""
    states: dict[int, str] = {}

    def one(run_id: int) -> None:
        try:
            states[run_id] = run_test_run(run_id, WORKER)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(run.pk,)) for run in runs]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    for run in runs:
        run.refresh_from_db()
    return states, wall


@pytest.mark.timeout(3 * 3600)
def test_all_twelve_checks_pass_in_one_zone_on_both_storage_types(
    vm: VmCloudProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """The version is published with both storage types; a run tests each, both at once, as
    a build's test stage runs them."""
    version = version_for("ready", [ZONE], BOTH)
    assert {li.storage_type for li in version.local_images.all()} == set(BOTH)
    api = clients.instance_api()
    for storage in BOTH:
        # Booted with UEFI, as Scaleway boots instances: the image's `uefi` tag tells
        # localcloud to start its servers on OVMF (servers restored from a snapshot have no
        # image: SeaBIOS).
        image_id = version.local_images.get(storage_type=storage).provider_image_id
        image = api.get_image(zone=ZONE, image_id=image_id).image
        api.update_image(zone=ZONE, image_id=image_id, tags=[*(image.tags or []), "uefi"])
        root_type = "sbs_snapshot" if storage == StorageType.SBS else "l_ssd"
        assert image.root_volume.volume_type == root_type
    before = resource_ids(vm)
    runs = [new_run(version, ZONE, storage_type=s, reason="all checks") for s in BOTH]

    states, wall = run_in_threads(runs)

    with capsys.disabled():
        print("\n" + "\n".join(summary(run) for run in runs) + f"\n  wall time: {wall:.0f} s")
    for run in runs:
        assert states[run.pk] == TestRunState.FINISHED, summary(run)
        # Whatever the outcomes, the clean-up is complete.
        assert_nothing_left(vm, run, before)
    for run in runs:
        _assert_twelve_passed(run)


def _assert_twelve_passed(run: TestRun) -> None:
    block = run.storage_type == StorageType.SBS
    found = results(run)
    assert list(found) == registry.names()
    not_passed = {name: (r.state, r.reason) for name, r in found.items() if r.state != "passed"}
    assert not not_passed, summary(run) + "\n" + logs(run, list(not_passed))
    # What localcloud cannot provide is listed with the result, never counted as proved.
    dns = found["dns"]
    assert dns.not_applicable and "public DNS name" in dns.not_applicable[0]
    assert "not applicable on this cloud" in dns.log
    assert "the guest booted in UEFI mode" in found["network"].log
    words = "Block Storage (PLAY2-PICO)" if block else "local storage (DEV1-S)"
    for name, result in found.items():
        assert result.started_at and result.finished_at and result.duration
        assert "$ " in result.log  # every check ran commands in a guest
        assert f"{registry.label(name)} in {ZONE} on {words}" in result.log
    if block:
        # The servers' roots were Block volumes; the copies were Block snapshots.
        assert "created block volume" in found["rescue"].log
        for name in ("hot_snapshot", "cold_snapshot"):
            assert "created block snapshot" in found[name].log, logs(run, [name])
            assert "created snapshot" not in found[name].log
        assert "created block snapshot" in found["backup"].log
        # Archive: the Block root stayed attached and in use while the server was off;
        # localcloud shows no server location, so the node's release is not proved.
        archive = found["archive"]
        assert "block root" in archive.log and "powered off: in_use" in archive.log
        assert archive.not_applicable == [
            "the release of the node: this cloud shows no server location, even running"
        ]
    else:
        assert "created block volume" not in found["rescue"].log
        assert "created snapshot" in found["hot_snapshot"].log
        assert found["archive"].not_applicable == []
    assert run.kept_resources == [] and run.error == ""


@pytest.mark.extra
@pytest.mark.timeout(3 * 3600)
def test_checks_run_in_two_zones_at_once(
    vm: VmCloudProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subset in two zones, the two runs in parallel, each on servers of its own zone
    (bench/test_runs_zones.py measures zones in parallel with every check)."""
    subset = ["network", "reboot", "hot_snapshot"]
    version = version_for("ready", ZONES)
    before = resource_ids(vm)
    runs = [new_run(version, zone, checks=subset) for zone in ZONES]

    states, wall = run_in_threads(runs)

    with capsys.disabled():
        print("\n" + "\n".join(summary(run) for run in runs) + f"\n  wall time: {wall:.0f} s")
    for run, zone in zip(runs, ZONES, strict=True):
        assert states[run.pk] == TestRunState.FINISHED, summary(run)
        assert_nothing_left(vm, run, before)
        found = results(run)
        assert list(found) == subset
        assert {r.state for r in found.values()} == {CheckState.PASSED}, (
            summary(run) + "\n" + logs(run)
        )
        assert zone in found["network"].log
    first, second = (results(run).values() for run in runs)
    first_finished = max(r.finished_at for r in first)
    first_started = min(r.started_at for r in first)
    for result in second:
        assert result.started_at < first_finished and first_started < result.finished_at


def _kept_servers_deleted(run: TestRun) -> None:
    apis = Apis(instance=clients.instance_api(), block=clients.block_api(), vpc=None)
    for record in run.kept_resources:
        fields = dict(record)
        fields["owner"] = fields.pop("check")
        delete(apis, Entry(**fields), timeout=300)


@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "checks",
    [
        # In CI: checks on the shared server, and rescue on a server of its own (in the
        # registry's order, the order of the results).
        pytest.param(["network", "dns", "reboot", "archive", "rescue"], id="shared-and-rescue"),
        pytest.param(None, id="every-check", marks=pytest.mark.extra),
    ],
)
def test_an_image_without_sshd_fails_its_checks_with_reasons_and_keeps_failed_servers(
    settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], checks
) -> None:
    """Every check of a broken image gets a result that says why; with "keep on failure",
    the servers of the failed checks (the shared one among them) stay in place and are
    listed."""
    cloud = configure(settings, monkeypatch, TEST_BOOT_TIMEOUT_SECONDS=BROKEN_BOOT_TIMEOUT_S)
    version = version_for("no-sshd", [ZONE])
    before = resource_ids(cloud)
    run = new_run(version, ZONE, checks=checks or [], keep_resources_on_failure=True)

    assert run_test_run(run.pk, WORKER) == TestRunState.FINISHED

    run.refresh_from_db()
    with capsys.disabled():
        print("\n" + summary(run))
    found = results(run)
    try:
        assert list(found) == (checks or registry.names())
        for name, result in found.items():
            assert result.state == CheckState.FAILED, summary(run) + "\n" + logs(run, [name])
            assert (
                "SSH did not answer" in result.reason
                and f"within {BROKEN_BOOT_TIMEOUT_S} s" in result.reason
            )
            assert result.finished_at is not None
        for name in ("network", "dns", "archive"):  # the chain: its server never answered
            assert found[name].reason.startswith("the shared server could not boot: ")
        servers = [k for k in run.kept_resources if k["kind"] == "server"]
        rescue = [k for k in servers if k["check"] == "rescue"]
        assert len(rescue) == 1, run.kept_resources
        assert rescue[0]["name"] == f"test-{run.pk}-rescue" and rescue[0]["zone"] == ZONE
        assert rescue[0]["id"] in resource_ids(cloud)["instance_server"]
        assert f"kept for debugging: server {rescue[0]['id']}" in found["rescue"].log
        # The shared server carries failed checks too: it stays, with the rescue server.
        assert {SHARED, "rescue"} <= {k["check"] for k in servers}, run.kept_resources
    finally:
        _kept_servers_deleted(run)
    assert tagged(cloud, f"test-run:{run.pk}") == []
    assert new_resources(before, resource_ids(cloud)) == {}


@pytest.mark.extra
@pytest.mark.timeout(3600)
def test_an_image_without_network_configuration_fails_with_a_reason(
    settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud = configure(settings, monkeypatch, TEST_BOOT_TIMEOUT_SECONDS=120)
    version = version_for("no-network", [ZONE])
    before = resource_ids(cloud)
    run = new_run(version, ZONE, checks=["network", "reboot", "cold_snapshot"])

    assert run_test_run(run.pk, WORKER) == TestRunState.FINISHED

    run.refresh_from_db()
    with capsys.disabled():
        print("\n" + summary(run))
    for name, result in results(run).items():
        assert result.state == CheckState.FAILED, summary(run) + "\n" + logs(run, [name])
        assert "SSH did not answer" in result.reason
    assert_nothing_left(cloud, run, before)


@pytest.mark.timeout(900)
def test_a_server_that_cannot_start_fails_its_checks_at_once_with_the_cause(
    settings, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """localcloud cannot make the VM's disk (the image's data is damaged): every poweron puts
    the server back to stopped with the reason, and each check fails with that reason instead
    of waiting out the boot timeout (an hour here: a wait for it would time the test out)."""
    cloud = configure(settings, monkeypatch, TEST_BOOT_TIMEOUT_SECONDS=3600)
    disk = tmp_path / "damaged.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
    image = import_image(cloud, clients.instance_api(), disk, "damaged")
    (cloud.state_dir / "blobs" / f"{image.root_volume.id}.qcow2").write_bytes(b"damaged" * 99)
    version = ImageVersion.objects.create(
        image=os_image("cannot_start"), arch="x86_64", name="2026-12-07"
    )
    LocalImage.objects.create(
        version=version,
        zone=Zone.objects.get_or_create(code=ZONE, defaults={"enabled": True})[0],
        provider_image_id=image.id,
        snapshot_id=image.root_volume.id,
        state=LocalImageState.AVAILABLE,
    )
    before = resource_ids(cloud)
    run = new_run(version, ZONE, checks=["network", "archive"])

    assert run_test_run(run.pk, WORKER) == TestRunState.FINISHED

    run.refresh_from_db()
    found = results(run)
    assert list(found) == ["network", "archive"]
    for result in found.values():
        assert result.state == CheckState.FAILED, summary(run)
        assert result.reason.startswith("the shared server could not boot: "), summary(run)
        assert "back to stopped (boot failed: " in result.reason, summary(run)
    verdict_line = verdict(version).reason
    assert "could not boot" in verdict_line and "boot failed: " in verdict_line
    assert_nothing_left(cloud, run, before)
