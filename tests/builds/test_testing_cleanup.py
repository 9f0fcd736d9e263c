"""The harness against localcloud's timer backend (servers change state but boot nothing), so
no VM is needed: every check of a run whose servers never answer over SSH still gets a result
that says why, everything the run created is deleted (or kept and listed, when asked), a
cancel stops a run within seconds and cleans up, and localcloud is recognised as such.

localcloud runs as a real subprocess (tests/cloud's fixture) and is reached through the real
SDK; the image the servers are created from is published by builds.publish."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from builds.choices import CheckState
from builds.choices import TestRunState as RunState
from builds.models import CheckResult, TestRun
from builds.testing import registry
from catalog.models import ImageVersion, Zone
from cloud import endpoints
from tests.builds.testing.published import timer_run_version
from tests.cloud.localcloud import Cloud

pytestmark = pytest.mark.django_db(transaction=True)

ZONE = "fr-par-1"


@pytest.fixture
def version(cloud: Cloud, qcow2_artefact: Path, settings) -> ImageVersion:
    return timer_run_version(settings, qcow2_artefact, ZONE, TEST_CHECK_CONCURRENCY=3)


def run_resources(cloud: Cloud, run: TestRun) -> list[tuple[str, str]]:
    tag = f"test-run:{run.pk}"
    return [
        (kind, item.get("id", ""))
        for kind, items in cloud.inventory().items()
        for item in items
        if isinstance(item, dict) and tag in (item.get("tags") or [])
    ]


def counts(cloud: Cloud) -> dict[str, int]:
    """How many resources of the kinds a run creates exist (the published image excepted)."""
    return cloud.counts(
        "instance_server",
        "instance_volume",
        "instance_snapshot",
        "instance_image",
        "instance_private_nic",
        "instance_ip",
        "block_volume",
        "vpc_private_network",
    )


def test_localcloud_is_recognised_by_its_operator_route(cloud: Cloud) -> None:
    assert endpoints.is_localcloud() is True
    assert endpoints.public_dns_name(ZONE, "11111111-1111-1111-1111-111111111111") is None


def test_every_check_gets_a_reason_and_nothing_is_left_behind(
    cloud: Cloud, version: ImageVersion
) -> None:
    from builds.testing.runner import run_test_run

    before = counts(cloud)
    run = TestRun.objects.create(version=version, zone=Zone.objects.get(code=ZONE))

    assert run_test_run(run.pk, "worker-1") == RunState.FINISHED

    run.refresh_from_db()
    results = {r.check_name: r for r in CheckResult.objects.filter(test_run=run)}
    assert list(results) == registry.names()
    for name, result in results.items():
        assert result.state == CheckState.FAILED, (name, result.state, result.reason, result.log)
        assert "SSH did not answer" in result.reason and "within 2 s" in result.reason
        assert result.started_at and result.finished_at and result.duration is not None
    chain = [m.NAME for m in registry.modules() if m.SHARED]
    for name in chain:
        assert results[name].reason.startswith("the shared server could not boot: SSH did not")
    # The shared server was booted once: only the first chained check's log shows its boot.
    assert "waiting for SSH on test-" in results[chain[0]].log
    assert "waiting for SSH" not in results[chain[1]].log
    assert "deleted server" in results[chain[1]].log  # its clean-up is every chained check's
    # The snapshot and backup checks share one source server, booted once for the three.
    copying = ["hot_snapshot", "backup", "cold_snapshot"]
    for name in copying:
        assert results[name].reason.startswith("the source server could not be prepared: SSH")
        assert results[name].log.count("created server") == 1  # the source, in each log
    assert "waiting for its copy of the source server (made by hot_snapshot)" in (
        results["backup"].log
    )
    assert "created private network" in results["private_networks"].log
    assert run_resources(cloud, run) == []
    assert counts(cloud) == before
    assert run.kept_resources == [] and run.error == ""
    assert run.claimed_by == "" and run.finished_at is not None


def test_kept_resources_of_a_failed_check_are_listed_and_left_in_place(
    cloud: Cloud, version: ImageVersion
) -> None:
    from builds.testing.runner import run_test_run

    run = TestRun.objects.create(
        version=version,
        zone=Zone.objects.get(code=ZONE),
        checks=["cold_snapshot", "private_networks"],
        keep_resources_on_failure=True,
    )

    run_test_run(run.pk, "worker-1")

    run.refresh_from_db()
    kept = {(k["kind"], k["check"], k["name"]) for k in run.kept_resources}
    assert ("server", "source", f"test-{run.pk}-source") in kept
    assert ("server", "private_networks", f"test-{run.pk}-pn-a") in kept
    assert ("server", "private_networks", f"test-{run.pk}-pn-b") in kept
    assert ("private_network", "private_networks", f"test-{run.pk}-pn") in kept
    present = {item["id"] for items in cloud.inventory().values() for item in items}
    assert {k["id"] for k in run.kept_resources if k["kind"] != "volume"} <= present
    log = CheckResult.objects.get(test_run=run, check_name="cold_snapshot").log
    assert "kept for debugging: server" in log


def test_a_cancel_stops_a_running_run_and_cleans_up(
    cloud: Cloud, version: ImageVersion, settings
) -> None:
    from builds.testing.runner import run_test_run

    settings.TEST_BOOT_TIMEOUT_SECONDS = 300  # the checks wait for SSH until cancelled
    settings.TEST_CHECK_CONCURRENCY = 2
    before = counts(cloud)
    run = TestRun.objects.create(version=version, zone=Zone.objects.get(code=ZONE))
    outcome: dict[str, str] = {}

    def target() -> None:
        try:
            outcome["state"] = run_test_run(run.pk, "worker-1")
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 60
    while not CheckResult.objects.filter(test_run=run, log__contains="waiting for SSH").exists():
        assert time.monotonic() < deadline, "no check started waiting for SSH"
        time.sleep(0.2)
    cancelled_at = time.monotonic()
    TestRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert time.monotonic() - cancelled_at < 60

    run.refresh_from_db()
    assert outcome["state"] == RunState.CANCELLED == run.state
    states = set(CheckResult.objects.filter(test_run=run).values_list("state", flat=True))
    assert states == {CheckState.CANCELLED}
    assert run_resources(cloud, run) == []
    assert counts(cloud) == before
