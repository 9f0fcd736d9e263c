"""Taking over a test run whose worker died: what the dead worker created is on disk (the
run's ledger rows, written before its check went on), and the worker that takes the run over
deletes it, and whatever else carries the run's tag, before the unfinished checks start
again; each deletion is in the run's check logs. A run cancelled while its worker was dead is
cleaned and ends cancelled.

localcloud's timer backend (servers change state but boot nothing) runs as a real subprocess
(tests/cloud's fixture), reached through the real SDK; the "dead worker" is the real harness
and ledger, dropped without its clean-up."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from scaleway_core.api import ScalewayException

from builds.choices import CheckState
from builds.choices import TestRunState as RunState
from builds.models import Build, CheckResult, TestRun, TestRunResource
from builds.testing.harness import SHARED, Harness, RunSpec
from builds.testing.ledger import Entry, Journal, Ledger
from builds.testing.reporting import Reporter
from builds.testing.runner import ledger_journal, run_test_run
from catalog.choices import StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, tags
from tests.builds.testing.published import timer_run_version
from tests.cloud.localcloud import Cloud

pytestmark = pytest.mark.django_db(transaction=True)

ZONE = "fr-par-1"
REGION = "fr-par"
DEAD = "host-a:4242"


@pytest.fixture
def version(cloud: Cloud, qcow2_artefact: Path, settings) -> ImageVersion:
    return timer_run_version(settings, qcow2_artefact, ZONE, TEST_LEASE_SECONDS=120)


def stale_run(version: ImageVersion, **fields: Any) -> TestRun:
    """A run that DEAD claimed an hour ago: "dns" had passed, "network" was running."""
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    run = TestRun.objects.create(
        **{
            "version": version,
            "zone": Zone.objects.get(code=ZONE),
            "build": version.build,
            "checks": ["network", "dns"],
            "state": RunState.RUNNING,
            "claimed_by": DEAD,
            "heartbeat_at": an_hour_ago,
            "started_at": an_hour_ago,
            **fields,
        }
    )
    CheckResult.objects.create(
        test_run=run, check_name="dns", state=CheckState.PASSED, log="dns passed\n"
    )
    CheckResult.objects.create(test_run=run, check_name="network", state=CheckState.RUNNING)
    return run


def dead_worker(run: TestRun) -> dict[str, str]:
    """What a worker creates through the harness before it dies (no close, no clean-up):
    the shared server with a private NIC, a security group, a private network and a
    flexible IP, all written in the ledger; and one more flexible IP carrying the run's tags
    that it had no time to write down. Returns {label: id}."""
    image = LocalImage.objects.get(
        version=run.version, zone__code=ZONE, storage_type=StorageType.LOCAL
    ).provider_image_id
    spec = RunSpec(
        test_run_id=run.pk,
        zone=ZONE,
        image_id=image,
        tags=tuple(tags.tags_for_run(run.pk, run.build_id)),
        keep_on_failure=False,
        commercial_type="DEV1-S",
        boot_timeout=2,
        ssh_timeout=5,
        action_timeout=30,
    )
    harness = Harness(spec, Reporter(), threading.Event(), ledger_journal(run.pk))
    harness.open()
    network_check = harness.context("network")
    server = network_check.create_server("shared", start=False, owner=SHARED)
    group_check = harness.context("security_group")
    group = group_check.call(
        group_check.instance.create_security_group,
        what="create security group",
        zone=ZONE,
        name=group_check.resource_name("sg"),
        description="a test run's group",
        stateful=True,
        tags=group_check.tags(),
    ).security_group
    group_check.record("security_group", group.id, name=group.name)
    pn_check = harness.context("private_networks")
    network = pn_check.call(
        pn_check.vpc.create_private_network,
        what="create private network",
        region=REGION,
        name=pn_check.resource_name("pn"),
        tags=pn_check.tags(),
        default_route_propagation_enabled=False,
    )
    pn_check.record("private_network", network.id, name=network.name)
    nic = pn_check.call(
        pn_check.instance.create_private_nic,
        what="attach the server",
        zone=ZONE,
        server_id=server,
        private_network_id=network.id,
        tags=pn_check.tags(),
    ).private_nic
    ip = network_check.call(
        network_check.instance.create_ip,
        what="create a flexible IP",
        zone=ZONE,
        type_="routed_ipv4",
        tags=network_check.tags(),
    ).ip
    network_check.record("ip", ip.id)
    unrecorded = clients.instance_api().create_ip(
        zone=ZONE, type_="routed_ipv4", tags=list(spec.tags)
    )
    assert harness.key is not None
    harness.key.remove()  # the key pair is a local file: the dead host's, not the cloud's
    return {
        "server": server,
        "security_group": group.id,
        "private_network": network.id,
        "nic": nic.id,
        "ip": ip.id,
        "unrecorded_ip": unrecorded.ip.id,
    }


def gone(fetch: Callable[[], Any]) -> bool:
    try:
        fetch()
    except ScalewayException as exc:
        if exc.status_code == 404:
            return True
        raise
    return False


def assert_all_gone(made: dict[str, str]) -> None:
    instance, vpc = clients.instance_api(), clients.vpc_api()
    assert gone(lambda: instance.get_server(zone=ZONE, server_id=made["server"]))
    assert gone(
        lambda: instance.get_security_group(zone=ZONE, security_group_id=made["security_group"])
    )
    assert gone(
        lambda: vpc.get_private_network(region=REGION, private_network_id=made["private_network"])
    )
    assert gone(lambda: instance.get_ip(zone=ZONE, ip=made["ip"]))
    assert gone(lambda: instance.get_ip(zone=ZONE, ip=made["unrecorded_ip"]))


def test_the_dead_workers_resources_are_written_down_as_they_are_created(
    cloud: Cloud, version: ImageVersion
) -> None:
    run = stale_run(version)

    made = dead_worker(run)

    rows = {(r.kind, r.resource_id, r.owner) for r in TestRunResource.objects.filter(test_run=run)}
    assert ("server", made["server"], SHARED) in rows
    assert ("security_group", made["security_group"], "security_group") in rows
    assert ("private_network", made["private_network"], "private_networks") in rows
    assert ("ip", made["ip"], "network") in rows
    assert ("ip", made["unrecorded_ip"], "network") not in rows
    network = TestRunResource.objects.get(test_run=run, kind="private_network")
    assert network.region == REGION and network.zone == ZONE


def test_a_takeover_deletes_what_the_dead_worker_left_then_runs_the_unfinished_checks(
    cloud: Cloud, version: ImageVersion
) -> None:
    run = stale_run(version)
    made = dead_worker(run)
    written = TestRunResource.objects.filter(test_run=run).count()  # its local volume too

    assert run_test_run(run.pk, "host-b:1") == RunState.FINISHED

    assert_all_gone(made)
    run.refresh_from_db()
    assert run.claimed_by == "" and run.error == "" and run.kept_resources == []
    assert not TestRunResource.objects.filter(test_run=run).exists()
    network = CheckResult.objects.get(test_run=run, check_name="network")
    assert "(taken over by another worker)" in network.log
    # What it wrote down, and the flexible IP found by the run's tag.
    count = written + 1
    assert f"taken over from worker {DEAD}: deleting the {count} resource(s) it left" in network.log
    left_by = f"(left by worker {DEAD})"
    for line in (
        f"deleted server {made['server']} (test-{run.pk}-shared) {left_by}",
        f"deleted security group {made['security_group']} (test-{run.pk}-sg) {left_by}",
        f"deleted private network {made['private_network']} (test-{run.pk}-pn) {left_by}",
        f"deleted ip {made['ip']} {left_by}",
        f"deleted ip {made['unrecorded_ip']}",
    ):
        assert line in network.log, line
    # The deletions come before the check starts again; it then fails on its own server.
    assert network.log.index(left_by) < network.log.index("waiting for SSH")
    assert network.state == CheckState.FAILED and "SSH did not answer" in network.reason
    # A check that ended under the dead worker keeps its result and is not run again.
    dns = CheckResult.objects.get(test_run=run, check_name="dns")
    assert dns.state == CheckState.PASSED
    assert "waiting for SSH" not in dns.log
    assert f"deleted server {made['server']}" in dns.log  # the shared server was its too
    # Nothing of the run is left: the new worker's own server went at the end as usual.
    assert not [
        item
        for items in cloud.inventory().values()
        for item in items
        if isinstance(item, dict) and tags.run_tag(run.pk) in (item.get("tags") or [])
    ]


def test_a_run_cancelled_while_its_worker_was_dead_is_cleaned_and_ends_cancelled(
    cloud: Cloud, version: ImageVersion
) -> None:
    run = stale_run(version, cancel_requested=True)
    made = dead_worker(run)

    assert run_test_run(run.pk, "host-b:1") == RunState.CANCELLED

    assert_all_gone(made)
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED and run.finished_at is not None
    assert run.claimed_by == "" and run.error == ""
    assert not TestRunResource.objects.filter(test_run=run).exists()
    network = CheckResult.objects.get(test_run=run, check_name="network")
    assert network.state == CheckState.CANCELLED
    assert network.reason == "the test run was cancelled"
    assert f"deleted server {made['server']}" in network.log
    assert "waiting for SSH" not in network.log  # nothing ran again
    assert CheckResult.objects.get(test_run=run, check_name="dns").state == CheckState.PASSED


def test_the_resources_of_a_run_held_by_a_live_worker_are_left_alone(
    cloud: Cloud, version: ImageVersion
) -> None:
    run = stale_run(version)
    made = dead_worker(run)
    written = TestRunResource.objects.filter(test_run=run).count()
    TestRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())

    assert run_test_run(run.pk, "host-b:1") == RunState.RUNNING

    server = clients.instance_api().get_server(zone=ZONE, server_id=made["server"]).server
    assert server.id == made["server"]
    assert TestRunResource.objects.filter(test_run=run).count() == written
    assert "taken over" not in CheckResult.objects.get(test_run=run, check_name="network").log


def test_a_check_thread_goes_on_only_once_its_resource_is_written(
    version: ImageVersion,
) -> None:
    run = stale_run(version)
    ledger = Ledger(ledger_journal(run.pk))
    assert ledger.journal is not None
    added = threading.Event()
    entry = Entry(kind="server", id="11111111-0000-0000-0000-000000000001", owner="x", zone=ZONE)

    def check_thread() -> None:
        try:
            ledger.add(entry)
            added.set()
        finally:
            connection.close()

    thread = threading.Thread(target=check_thread)
    thread.start()
    assert ledger.journal.pending.wait(10)
    assert not added.wait(0.3)  # waiting for the run's own thread to write it
    assert not TestRunResource.objects.filter(test_run=run).exists()

    ledger.journal.flush()

    assert added.wait(10)
    thread.join(10)
    row = TestRunResource.objects.get(test_run=run)
    assert (row.kind, row.resource_id, row.owner, row.zone) == ("server", entry.id, "x", ZONE)
    ledger.forget("server", entry.id)  # on the journal's own thread: written at once
    assert not TestRunResource.objects.filter(test_run=run).exists()


def test_a_journal_write_that_nobody_flushes_does_not_hang_the_check() -> None:
    written: list[str] = []
    journal = Journal(lambda op, entry: written.append(op), wait_seconds=0.2)
    done = threading.Event()
    entry = Entry(kind="ip", id="ip-1", owner="x", zone=ZONE)
    thread = threading.Thread(target=lambda: (journal.submit("add", entry), done.set()))
    thread.start()
    assert done.wait(5)
    thread.join(5)
    assert written == []
    journal.flush()  # written late rather than never
    assert written == ["add"]


def test_the_schedule_sends_again_a_stale_run_that_no_running_build_follows(
    cloud: Cloud, version: ImageVersion
) -> None:
    from django_q.models import OrmQ

    from builds import tasks
    from builds.schedules import SCHEDULES

    orphan = stale_run(version, build=None)  # a Re-run: no build takes it over
    adopted = stale_run(version)  # its build is still running: its test stage adopts it
    live = stale_run(version, build=None)
    TestRun.objects.filter(pk=live.pk).update(heartbeat_at=timezone.now())
    before = set(OrmQ.objects.values_list("pk", flat=True))

    assert tasks.requeue_stale_test_runs() == 1

    [sent] = OrmQ.objects.exclude(pk__in=before)
    assert sent.func() == "builds.tasks.run_test_runs"
    assert sent.args() == ([orphan.pk],)
    # A build cancelled while its worker was dead takes nothing over: its runs are
    # cancelled and sent again, to delete what they left.
    Build.objects.filter(pk=version.build.pk).update(cancel_requested=True)
    before |= {sent.pk}
    assert tasks.requeue_stale_test_runs() == 2
    [sent] = OrmQ.objects.exclude(pk__in=before)
    assert sent.args() == ([orphan.pk, adopted.pk],)
    adopted.refresh_from_db()
    orphan.refresh_from_db()
    assert adopted.cancel_requested and not orphan.cancel_requested
    # Every minute, as stale builds are (the default cluster sends it to the long one).
    [schedule] = [s for s in SCHEDULES if s.func == "builds.tasks.requeue_stale_test_runs"]
    assert (schedule.schedule_type, schedule.minutes) == ("I", 1)


def test_a_followed_run_is_left_to_its_live_worker_then_taken_over_and_announced_once(
    cloud: Cloud, version: ImageVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    from builds.signals import test_run_ended
    from builds.testing import orchestration

    monkeypatch.setattr(orchestration, "FOLLOW_SECONDS", 0.1)
    run = stale_run(version)
    TestRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())  # DEAD is alive
    announced: list[int] = []

    def receiver(sender: Any, test_run: TestRun, **kwargs: Any) -> None:
        announced.append(test_run.pk)

    test_run_ended.connect(receiver, dispatch_uid="test-followed-run")
    following = threading.Event()
    states: dict[int, str] = {}

    def follow() -> bool:
        following.set()
        return True

    def build_test_stage() -> None:
        try:
            states.update(orchestration.run_in_parallel([run.pk], "host-b:1", follow=follow))
        finally:
            connection.close()

    thread = threading.Thread(target=build_test_stage)
    try:
        thread.start()
        assert following.wait(10)
        run.refresh_from_db()
        assert run.claimed_by == DEAD, "a run held by a live worker is left to it"
        # Its worker dies: the follower takes the run over once the lease has expired.
        TestRun.objects.filter(pk=run.pk).update(
            heartbeat_at=timezone.now() - dt.timedelta(minutes=5)
        )
        thread.join(120)
    finally:
        test_run_ended.disconnect(dispatch_uid="test-followed-run")
    assert not thread.is_alive()
    assert states == {run.pk: RunState.FINISHED}
    run.refresh_from_db()
    assert run.state == RunState.FINISHED and run.claimed_by == ""
    assert "(taken over by another worker)" in run.results.get(check_name="network").log
    assert announced == [run.pk]
