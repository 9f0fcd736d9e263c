"""The test-run harness without booting anything: the check registry, a run that cannot run
(no published image in its zone), a run cancelled before it started, an unknown check name,
and the ledger's deletion order."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest
from django.utils import timezone

from builds.choices import CheckState
from builds.choices import TestRunState as RunState
from builds.models import CheckResult, TestRun
from builds.testing import checks, registry
from builds.testing.ledger import Entry, Ledger
from builds.testing.runner import run_test_run
from catalog.choices import LocalImageState
from catalog.models import ImageVersion, LocalImage, Zone
from tests.catalog.factories import os_image

SPEC_LABELS = {
    "Archive",
    "Backup",
    "Block volume",
    "Cold snapshot",
    "DNS",
    "Hot snapshot",
    "Network",
    "Reboot",
    "Rescue",
    "Security group",
    "Stop in place",
    "Basic Private Networks",
}
SHARED_CHAIN = [
    "network",
    "dns",
    "security_group",
    "block_volume",
    "reboot",
    "stop_in_place",
    "archive",
]


@pytest.fixture
def version(db) -> ImageVersion:
    image = os_image("debian_bookworm")
    Zone.objects.create(code="fr-par-1", enabled=True)
    Zone.objects.create(code="nl-ams-1", enabled=True)
    return ImageVersion.objects.create(image=image, arch="x86_64", name="2026-11-26")


def test_the_registry_lists_the_twelve_checks_one_module_each() -> None:
    names = registry.names()
    assert len(names) == 12 == len(set(names))
    folder = Path(checks.__file__).parent
    on_disk = {m.name for m in pkgutil.iter_modules([str(folder)])}
    assert on_disk == set(names)
    modules = registry.modules()
    assert [m.NAME for m in modules] == names
    assert {m.LABEL for m in modules} == SPEC_LABELS
    assert all(callable(m.run) and isinstance(m.SHARED, bool) for m in modules)
    assert [m.NAME for m in modules if m.SHARED] == SHARED_CHAIN


def test_an_unknown_check_name_is_refused_by_the_registry() -> None:
    with pytest.raises(KeyError):
        registry.get("os")
    assert registry.label("os") == "os"
    assert registry.label("stop_in_place") == "Stop in place"


def test_a_run_without_a_published_image_in_its_zone_ends_in_error(
    version: ImageVersion,
) -> None:
    # Published in fr-par-1 only; the run is for nl-ams-1.
    LocalImage.objects.create(
        version=version,
        zone=Zone.objects.get(code="fr-par-1"),
        provider_image_id="11111111-2222-3333-4444-555555555555",
        state=LocalImageState.AVAILABLE,
    )
    run = TestRun.objects.create(
        version=version, zone=Zone.objects.get(code="nl-ams-1"), checks=["network", "reboot"]
    )

    assert run_test_run(run.pk, "worker-1") == RunState.ERROR

    run.refresh_from_db()
    assert run.state == RunState.ERROR
    assert (
        run.error
        == "version debian_bookworm 2026-11-26 (x86_64) has no published image on local storage "
        "in nl-ams-1"
    )
    assert run.finished_at is not None
    results = {r.check_name: r for r in run.results.all()}
    assert set(results) == {"network", "reboot"}
    for result in results.values():
        assert result.state == CheckState.ERROR
        assert result.reason == f"not run: {run.error}"


def test_a_run_cancelled_before_it_started_cancels_every_check(version: ImageVersion) -> None:
    run = TestRun.objects.create(
        version=version, zone=Zone.objects.get(code="fr-par-1"), cancel_requested=True
    )

    assert run_test_run(run.pk, "worker-1") == RunState.CANCELLED

    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    results = list(run.results.all())
    assert sorted(r.check_name for r in results) == sorted(registry.names())
    assert {r.state for r in results} == {CheckState.CANCELLED}
    assert all("cancelled before this check started" in r.reason for r in results)


def test_a_run_held_by_a_live_worker_is_left_alone(version: ImageVersion) -> None:
    run = TestRun.objects.create(
        version=version,
        zone=Zone.objects.get(code="fr-par-1"),
        state=RunState.RUNNING,
        claimed_by="worker-1",
        heartbeat_at=timezone.now(),
    )
    assert run_test_run(run.pk, "worker-2") == RunState.RUNNING
    run.refresh_from_db()
    assert run.claimed_by == "worker-1"
    assert not CheckResult.objects.filter(test_run=run).exists()


def test_an_unknown_check_gets_an_error_result_and_the_others_still_run(
    version: ImageVersion,
) -> None:
    run = TestRun.objects.create(
        version=version, zone=Zone.objects.get(code="fr-par-1"), checks=["teleport"]
    )
    # No image either: the unknown check says what it is, not "not run".
    run_test_run(run.pk, "worker-1")
    result = CheckResult.objects.get(test_run=run, check_name="teleport")
    assert result.state == CheckState.ERROR
    assert result.reason == "no check is registered under the name 'teleport'"


def test_a_missing_run_is_reported_as_gone(db) -> None:
    assert run_test_run(999999, "worker-1") == "gone"


def test_the_ledger_deletes_what_holds_before_what_is_held() -> None:
    # A Block root outlives its server and a Block snapshot may be held by an image (a
    # backup's) or be the base of a volume: both go after those.
    ledger = Ledger()
    for kind, id_ in [
        ("private_network", "pn"),
        ("snapshot", "snap-1"),
        ("server", "srv-1"),
        ("security_group", "sg"),
        ("image", "img"),
        ("server", "srv-2"),
        ("block_snapshot", "blk-snap"),
        ("block_volume", "blk"),
        ("volume", "vol"),
        ("snapshot", "snap-2"),
    ]:
        ledger.add(Entry(kind=kind, id=id_, owner="check", zone="fr-par-1"))
    ledger.forget("volume", "vol")
    assert [e.id for e in ledger.in_order()] == [
        "srv-2",
        "srv-1",
        "img",
        "snap-2",
        "snap-1",
        "blk",
        "blk-snap",
        "sg",
        "pn",
    ]
