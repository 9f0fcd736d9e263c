"""The test matrix of a version: latest result per (zone, storage type, check), the verdict
releases rely on, Re-run of one cell / one row / one zone / the failed cells, the log page,
and who may do what. The version is published with both storage types (local storage and
Block Storage) in two zones: 2 x 2 x 12 cells."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import OrmQ

from builds.choices import CheckState, TestRunState
from builds.models import CheckResult, TestRun
from builds.testing import orchestration
from catalog.choices import StorageType, VersionState
from catalog.models import AuditEntry, Zone
from tests.catalog.factories import os_image
from tests.lifecycle import version_with_images

pytestmark = pytest.mark.django_db
ZONES = ("fr-par-1", "nl-ams-1")
LOCAL, BLOCK = StorageType.LOCAL, StorageType.SBS
BOTH = (LOCAL, BLOCK)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def version():
    image = os_image("debian_bookworm")
    return version_with_images(image, "2026-11-20", state=VersionState.PUBLISHED, zones=ZONES)


def finished_run(version, zone: str, states: dict[str, str], storage: str = LOCAL) -> TestRun:
    """A finished run on `storage` whose results are `states` (check name -> state), as the
    runner leaves."""
    run = TestRun.objects.create(
        version=version,
        zone=Zone.objects.get(code=zone),
        storage_type=storage,
        checks=list(states),
        state=TestRunState.FINISHED,
    )
    for name, state in states.items():
        CheckResult.objects.create(
            test_run=run,
            check_name=name,
            state=state,
            duration=3.0,
            reason="boot id did not change after reboot" if state == CheckState.FAILED else "",
            log=f"$ {name}\nok\n",
        )
    return run


def all_checks(state: str = CheckState.PASSED) -> dict[str, str]:
    return dict.fromkeys(orchestration.check_names(), state)


def test_twelve_checks_are_registered_in_one_place_each_in_its_own_module() -> None:
    from builds.testing import registry

    names = orchestration.check_names()
    assert len(names) == 12 == len(set(names))
    modules = registry.modules()
    assert len({m.__name__ for m in modules}) == 12
    assert {c.label for c in orchestration.checks()} >= {
        "Archive",
        "Backup",
        "Reboot",
        "Rescue",
        "Stop in place",
    }


def test_a_failed_cell_rerun_alone_turns_the_matrix_green(version) -> None:
    for zone in ZONES:
        for storage in BOTH:
            states = all_checks()
            if (zone, storage) == ("nl-ams-1", BLOCK):
                states["reboot"] = CheckState.FAILED
            finished_run(version, zone, states, storage)
    assert orchestration.record_verdict(version) == VersionState.TEST_FAILED
    verdict = orchestration.verdict(version)
    assert not verdict.passed
    assert (
        "reboot failed in nl-ams-1 on Block Storage: boot id did not change after reboot (47/48)"
        in verdict.reason
    )
    grid = orchestration.matrix(version)
    assert grid.cell("nl-ams-1", LOCAL, "reboot").ok  # the same check on local storage
    assert not grid.green("nl-ams-1", BLOCK) and grid.green("nl-ams-1", LOCAL)

    # Re-running only that cell, which passes this time, makes every cell green.
    finished_run(version, "nl-ams-1", {"reboot": CheckState.PASSED}, BLOCK)
    grid = orchestration.matrix(version)
    assert grid.storage_types == [LOCAL, BLOCK]
    assert grid.all_passed and grid.passed == grid.total == 48
    assert orchestration.record_verdict(version) == VersionState.TESTED
    verdict = orchestration.verdict(version)
    assert verdict.passed
    assert verdict.reason == (
        "Every check (12) passed in every enabled zone (2) on local storage and Block Storage."
    )


def test_a_storage_type_never_tested_keeps_the_version_untested_and_says_where(
    version,
) -> None:
    for zone in ZONES:
        finished_run(version, zone, all_checks(), LOCAL)
    finished_run(version, "fr-par-1", all_checks(), BLOCK)
    grid = orchestration.matrix(version)
    assert not grid.all_passed and grid.passed == 36 and grid.total == 48
    verdict = orchestration.verdict(version)
    assert not verdict.passed
    assert verdict.reason == (
        "The version is not tested yet everywhere: not tested on Block Storage in nl-ams-1; "
        "36 of 48 checks passed."
    )
    # Green on local storage everywhere is no verdict: Block Storage is part of the matrix.
    assert orchestration.record_verdict(version) == VersionState.PUBLISHED


def test_a_version_published_on_local_storage_only_is_judged_on_it_alone(db) -> None:
    image = os_image("debian_trixie")
    image.storage_types = [LOCAL]
    image.save()
    only_local = version_with_images(image, "2026-11-20", state=VersionState.PUBLISHED, zones=ZONES)
    for zone in ZONES:
        finished_run(only_local, zone, all_checks(), LOCAL)
    grid = orchestration.matrix(only_local)
    assert grid.storage_types == [LOCAL] and grid.total == 24 and grid.all_passed
    assert orchestration.record_verdict(only_local) == VersionState.TESTED


@pytest.mark.parametrize(
    ("state", "words"),
    [(CheckState.ERROR, "could not run in"), (CheckState.CANCELLED, "was cancelled in")],
)
def test_the_verdict_says_a_cell_errored_or_was_cancelled_not_that_it_failed(
    version, state, words
) -> None:
    for zone in ZONES:
        for storage in BOTH:
            states = all_checks()
            if zone == "fr-par-1" and storage == LOCAL:
                states["backup"] = state
            finished_run(version, zone, states, storage)
    reason = orchestration.verdict(version).reason
    assert f"backup {words} fr-par-1 on local storage" in reason and "failed" not in reason


def test_not_applicable_is_never_counted_as_passed(version) -> None:
    for zone in ZONES:
        for storage in BOTH:
            states = all_checks()
            states["dns"] = CheckState.NOT_APPLICABLE
            finished_run(version, zone, states, storage)
    verdict = orchestration.verdict(version)
    assert not verdict.passed
    assert "could not be applied on this cloud" in verdict.reason
    assert orchestration.record_verdict(version) == VersionState.PUBLISHED  # no verdict either way


def test_a_check_missing_in_one_zone_keeps_the_version_untested(version) -> None:
    for storage in BOTH:
        finished_run(version, "fr-par-1", all_checks(), storage)
    finished_run(version, "nl-ams-1", all_checks(), BLOCK)
    finished_run(
        version, "nl-ams-1", {n: CheckState.PASSED for n in orchestration.check_names()[:9]}
    )
    verdict = orchestration.verdict(version)
    assert not verdict.passed
    assert "3 check(s) not run on local storage in nl-ams-1; 45 of 48 checks passed" in (
        verdict.reason
    )
    assert orchestration.record_verdict(version) == VersionState.PUBLISHED


def test_the_matrix_costs_the_same_queries_with_a_long_history(version) -> None:
    finished_run(version, "fr-par-1", all_checks(CheckState.FAILED))
    with CaptureQueriesContext(connection) as few:
        orchestration.matrix(version)
    for _ in range(30):
        for zone in ZONES:
            for storage in BOTH:
                finished_run(version, zone, all_checks(), storage)
    with CaptureQueriesContext(connection) as many:
        grid = orchestration.matrix(version)
    assert len(many) == len(few)
    assert grid.all_passed


def test_the_matrix_panel_computes_the_matrix_once_per_request(version, viewer) -> None:
    for zone in ZONES:
        for storage in BOTH:
            finished_run(version, zone, all_checks(), storage)
    client = logged_in(viewer)
    url = reverse("builds:test_matrix", args=[version.pk])
    with CaptureQueriesContext(connection) as ctx:
        panel = client.get(url, HTTP_HX_REQUEST="true")
    html = panel.content.decode()
    assert panel.status_code == 200 and "passed in every enabled zone" in html
    latest_per_cell = [q for q in ctx.captured_queries if "MAX(" in q["sql"].upper()]
    assert len(latest_per_cell) == 1
    # One row per (zone, storage type).
    for zone in ZONES:
        for storage in BOTH:
            assert f'data-zone="{zone}" data-storage="{storage}"' in html
    assert html.count('title="instance_sbs">Block Storage</td>') == 2
    # A longer history of both storage types costs no more queries.
    for _ in range(5):
        for zone in ZONES:
            for storage in BOTH:
                finished_run(version, zone, all_checks(), storage)
    with CaptureQueriesContext(connection) as later:
        client.get(url, HTTP_HX_REQUEST="true")
    assert len(later) == len(ctx)


def test_viewers_see_the_matrix_and_the_log_but_cannot_rerun(version, viewer) -> None:
    run = finished_run(version, "fr-par-1", {**all_checks(), "reboot": CheckState.FAILED}, BLOCK)
    client = logged_in(viewer)
    panel = client.get(reverse("builds:test_matrix", args=[version.pk])).content.decode()
    assert 'data-check="reboot" data-state="failed"' in panel
    assert "Re-run" not in panel
    result = run.results.get(check_name="reboot")
    page = client.get(reverse("builds:check_log", args=[result.pk])).content.decode()
    assert "boot id did not change after reboot" in page and "$ reboot" in page
    assert "on Block Storage</h1>" in page
    response = client.post(
        reverse("builds:test_rerun", args=[version.pk]), {"zone": "fr-par-1", "check": "reboot"}
    )
    assert response.status_code == 403
    assert TestRun.objects.count() == 1


def test_rerun_one_cell_one_zone_or_the_failed_cells(
    version, manager, django_capture_on_commit_callbacks
) -> None:
    finished_run(version, "fr-par-1", {**all_checks(), "reboot": CheckState.FAILED}, BLOCK)
    finished_run(version, "fr-par-1", all_checks(), LOCAL)
    finished_run(version, "nl-ams-1", {**all_checks(), "dns": CheckState.ERROR})
    finished_run(version, "nl-ams-1", all_checks(), BLOCK)
    client = logged_in(manager)
    url = reverse("builds:test_rerun", args=[version.pk])
    panel = client.get(reverse("builds:test_matrix", args=[version.pk])).content.decode()
    assert "Re-run failed cells" in panel and 'data-testid="rerun-cell"' in panel
    assert 'name="storage" value="instance_sbs"' in panel

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"zone": "fr-par-1", "storage": BLOCK, "check": "reboot"})
    cell = TestRun.objects.order_by("-id").first()
    assert cell.zone.code == "fr-par-1" and cell.checks == ["reboot"]
    assert cell.storage_type == BLOCK
    assert cell.state == TestRunState.QUEUED and cell.results.get().state == CheckState.PENDING
    # The matrix shows the cell queued at once, and keeps polling while it is.
    grid = orchestration.matrix(version)
    assert grid.cell("fr-par-1", BLOCK, "reboot").state == CheckState.PENDING and grid.active
    assert grid.cell("fr-par-1", LOCAL, "reboot").ok
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == orchestration.RUN_TASK and queued.task["args"] == ([cell.pk],)
    entry = AuditEntry.objects.get(action="tests.rerun")
    assert "reboot in fr-par-1 on Block Storage" in entry.message

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"failed": "1"})
    # fr-par-1's reboot is pending again (not failed), so only nl-ams-1's dns is re-run, on
    # the storage type it failed on.
    failed_run = TestRun.objects.order_by("-id").first()
    assert (failed_run.zone.code, failed_run.storage_type, failed_run.checks) == (
        "nl-ams-1",
        LOCAL,
        ["dns"],
    )
    assert TestRun.objects.count() == 6

    # One row: every check of one zone on one storage type.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"zone": "nl-ams-1", "storage": BLOCK, "keep": "1"})
    row_run = TestRun.objects.order_by("-id").first()
    assert row_run.checks == orchestration.check_names() and row_run.keep_resources_on_failure
    assert (row_run.zone.code, row_run.storage_type) == ("nl-ams-1", BLOCK)
    assert TestRun.objects.count() == 7

    # A whole zone: one run per storage type published there.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"zone": "fr-par-1"})
    zone_runs = TestRun.objects.order_by("-id")[:2]
    assert sorted(r.storage_type for r in zone_runs) == sorted(BOTH)
    assert all(r.zone.code == "fr-par-1" for r in zone_runs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"zone": "xx-nowhere-1"}, "is not an enabled zone"),
        ({"zone": "fr-par-1", "check": "teleport"}, "There is no check named"),
        ({"check": "reboot"}, "needs its zone"),
        ({"zone": "fr-par-1", "storage": "b_ssd"}, "There is no storage type"),
        ({"storage": "instance_sbs"}, "needs its zone"),
    ],
)
def test_a_bad_rerun_says_why_and_starts_nothing(version, manager, data, message) -> None:
    response = logged_in(manager).post(
        reverse("builds:test_rerun", args=[version.pk]), data, follow=True
    )
    assert message in response.content.decode()
    assert not TestRun.objects.exists() and not OrmQ.objects.exists()


def test_rerun_needs_csrf(version, manager) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    response = client.post(reverse("builds:test_rerun", args=[version.pk]), {"failed": "1"})
    assert response.status_code == 403
    assert not TestRun.objects.exists()


def test_runs_are_created_per_zone_and_storage_type_published_there(version) -> None:
    # nl-ams-1 has lost its Block Storage image: only local storage is tested there.
    version.local_images.filter(zone__code="nl-ams-1", storage_type=BLOCK).update(state="deleted")
    runs = orchestration.create_runs(version, orchestration.enabled_zones())
    assert [(r.zone.code, r.storage_type) for r in runs] == [
        ("fr-par-1", LOCAL),
        ("fr-par-1", BLOCK),
        ("nl-ams-1", LOCAL),
    ]
    assert all(r.results.count() == 12 for r in runs)
    grid = orchestration.matrix(version)
    assert grid.unpublished == ["nl-ams-1 (Block Storage)"]
    assert [(r.zone.code, r.storage_type, r.published) for r in grid.rows()] == [
        ("fr-par-1", LOCAL, True),
        ("fr-par-1", BLOCK, True),
        ("nl-ams-1", LOCAL, True),
        ("nl-ams-1", BLOCK, False),
    ]


def test_cancel_asks_the_active_runs_to_stop(version, manager) -> None:
    [run, _block] = orchestration.create_runs(version, [Zone.objects.get(code="fr-par-1")])
    logged_in(manager).post(reverse("builds:test_cancel", args=[version.pk]))
    run.refresh_from_db()
    assert run.cancel_requested and run.cancel_is_requested()
