"""The janitor and what test runs make: security groups, private networks (VPC) and flexible
IPs (and servers) tagged with a test run are orphans once the run has ended or is gone, and
are deleted servers first; those of an active run are kept; untagged ones are never touched.
Against a real localcloud through the real SDK."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from scaleway_core.api import ScalewayException

from builds.choices import TestRunState as RunState
from builds.janitor import run_janitor
from builds.models import TestRun
from catalog.choices import StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, tags
from tests.builds.testing.published import published_version
from tests.cloud.localcloud import ZONES, Cloud

ZONE = "fr-par-1"


@pytest.fixture
def version(cloud: Cloud, db, qcow2_artefact: Path) -> ImageVersion:
    """A version published in fr-par-1 by a build that is done."""
    for code in ZONES:
        Zone.objects.create(code=code, enabled=True)
    return published_version(qcow2_artefact, Zone.objects.filter(code=ZONE), build_state="done")


def make_run(version: ImageVersion, state: str, ended: dt.datetime | None = None) -> TestRun:
    return TestRun.objects.create(
        version=version,
        zone=Zone.objects.get(code=ZONE),
        build=version.build,
        state=state,
        finished_at=ended,
    )


class Made:
    """Resources made through the SDK as a test run makes them (or untagged)."""

    def __init__(self) -> None:
        self.instance = clients.instance_api()
        self.vpc = clients.vpc_api()

    def group(self, labels: list[str], zone: str = ZONE) -> str:
        return self.instance.create_security_group(
            zone=zone, name="sg", description="d", stateful=True, tags=labels
        ).security_group.id

    def network(self, labels: list[str], region: str = "fr-par") -> str:
        return self.vpc.create_private_network(
            region=region, name="pn", tags=labels, default_route_propagation_enabled=False
        ).id

    def ip(self, labels: list[str], zone: str = ZONE, server: str | None = None) -> str:
        return self.instance.create_ip(
            zone=zone, type_="routed_ipv4", tags=labels, server=server
        ).ip.id

    def exists(self, kind: str, id_: str, where: str = ZONE) -> bool:
        fetch: dict[str, Callable[[], Any]] = {
            "server": lambda: self.instance.get_server(zone=where, server_id=id_),
            "security_group": lambda: self.instance.get_security_group(
                zone=where, security_group_id=id_
            ),
            "private_network": lambda: self.vpc.get_private_network(
                region=where, private_network_id=id_
            ),
            "ip": lambda: self.instance.get_ip(zone=where, ip=id_),
        }
        try:
            fetch[kind]()
        except ScalewayException as exc:
            if exc.status_code == 404:
                return False
            raise
        return True


def test_what_an_ended_test_run_left_is_deleted_and_an_active_runs_is_kept(
    cloud: Cloud, version: ImageVersion
) -> None:
    made = Made()
    ended = make_run(version, RunState.FINISHED, timezone.now() - dt.timedelta(days=2))
    active = make_run(version, RunState.RUNNING)
    ended_tags = tags.tags_for_run(ended.pk, version.build.pk)
    active_tags = tags.tags_for_run(active.pk, version.build.pk)

    # The ended run's server holds its group, its IP and a NIC on its network: deleting any
    # of those before the server would be refused.
    old_group = made.group(ended_tags)
    old_network = made.network(ended_tags)
    image = LocalImage.objects.get(
        version=version, zone__code=ZONE, storage_type=StorageType.LOCAL
    ).provider_image_id
    server = made.instance.create_server(
        zone=ZONE,
        commercial_type="DEV1-S",
        image=image,
        name=f"test-{ended.pk}-pn-a",
        tags=ended_tags,
        security_group=old_group,
        dynamic_ip_required=False,
    ).server.id
    made.instance.create_private_nic(
        zone=ZONE, server_id=server, private_network_id=old_network, tags=ended_tags
    )
    old_ip = made.ip(ended_tags, server=server)
    # A run that no longer exists.
    lost_ip = made.ip(tags.tags_for_run(999_999))
    # The active run's, in other zones and regions too.
    new_group = made.group(active_tags, zone="nl-ams-1")
    new_network = made.network(active_tags, region="nl-ams")
    new_ip = made.ip(active_tags, zone="fr-par-2")
    # Not the factory's: no tag at all, or a test run's tag without the factory's.
    foreign = {
        ("security_group", made.group([]), ZONE),
        ("private_network", made.network([]), "fr-par"),
        ("ip", made.ip([]), ZONE),
        ("ip", made.ip([tags.run_tag(ended.pk)]), ZONE),
    }

    dry = run_janitor(older_than=dt.timedelta(0), dry_run=True)
    assert dry.errors == [] and dry.removed == []
    seen = {f["id"]: f for f in dry.findings}
    for id_ in (server, old_group, old_network, old_ip, lost_ip):
        assert seen[id_]["action"] == "would delete", seen[id_]
    assert made.exists("server", server) and made.exists("security_group", old_group)

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert run.errors == []
    # (The build's upload goes too: its imports are finished.)
    removed = {(r["kind"], r["where"], r["id"]) for r in run.removed if r["kind"] != "object"}
    assert removed == {
        ("server", ZONE, server),
        ("security_group", ZONE, old_group),
        ("private_network", "fr-par", old_network),
        ("ip", ZONE, old_ip),
        ("ip", ZONE, lost_ip),
    }
    order = [r["kind"] for r in run.removed if r["kind"] != "object"]
    assert order.index("server") < min(
        order.index(kind) for kind in ("security_group", "private_network", "ip")
    )
    for kind, id_, where in (
        ("server", server, ZONE),
        ("security_group", old_group, ZONE),
        ("private_network", old_network, "fr-par"),
        ("ip", old_ip, ZONE),
        ("ip", lost_ip, ZONE),
    ):
        assert not made.exists(kind, id_, where), (kind, id_)
    findings = {f["id"]: f for f in run.findings}
    assert findings[old_group]["reason"] == f"test run #{ended.pk} has ended (finished)"
    assert findings[old_group]["test_run"] == ended.pk
    assert findings[old_ip]["name"].startswith("127.")  # an IP is named by its address
    assert findings[lost_ip]["reason"] == "test run #999999 no longer exists"
    for kind, id_, where in (
        ("security_group", new_group, "nl-ams-1"),
        ("private_network", new_network, "nl-ams"),
        ("ip", new_ip, "fr-par-2"),
    ):
        assert made.exists(kind, id_, where), (kind, id_)
        assert findings[id_]["action"] == "kept"
        assert findings[id_]["reason"] == f"test run #{active.pk} is still running"
        assert findings[id_]["where"] == where
    for kind, id_, where in foreign:
        assert made.exists(kind, id_, where), (kind, id_)
        assert id_ not in findings


def test_the_resources_of_a_run_that_ended_recently_wait_for_the_threshold(
    cloud: Cloud, version: ImageVersion
) -> None:
    made = Made()
    run = make_run(version, RunState.CANCELLED, timezone.now() - dt.timedelta(minutes=5))
    run.kept_resources = []
    run.save()
    labels = tags.tags_for_run(run.pk)
    ip = made.ip(labels)  # no creation date: the run's end is what counts
    network = made.network(labels)

    young = run_janitor(older_than=dt.timedelta(hours=1), dry_run=False)

    assert young.removed == []
    findings = {f["id"]: f for f in young.findings}
    assert findings[ip]["orphan"] and findings[ip]["action"] == "too recent"
    assert findings[network]["action"] == "too recent"
    assert findings[ip]["reason"] == f"test run #{run.pk} has ended (cancelled)"
    assert made.exists("ip", ip) and made.exists("private_network", network, "fr-par")

    TestRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - dt.timedelta(hours=2))
    later = run_janitor(older_than=dt.timedelta(0), dry_run=False)

    assert {r["id"] for r in later.removed if r["kind"] != "object"} == {ip, network}


def test_resources_kept_for_debugging_say_so_when_their_run_has_ended(
    cloud: Cloud, version: ImageVersion
) -> None:
    made = Made()
    run = make_run(version, RunState.FINISHED, timezone.now() - dt.timedelta(days=3))
    network = made.network(tags.tags_for_run(run.pk, version.build.pk))
    run.kept_resources = [{"kind": "private_network", "id": network, "check": "private_networks"}]
    run.save()

    dry = run_janitor(older_than=dt.timedelta(0), dry_run=True)

    [finding] = [f for f in dry.findings if f["id"] == network]
    assert finding["action"] == "would delete"
    assert finding["reason"] == (
        f"test run #{run.pk} has ended (finished); it was kept for debugging"
    )
