"""The test matrix of a version: latest result per (zone, check), the verdict releases rely
on, Re-run of one cell / one zone / the failed cells, the log page, and who may do what."""

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


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def version():
    image = os_image("debian_bookworm")
    return version_with_images(image, "2026-11-20", state=VersionState.PUBLISHED, zones=ZONES)


def finished_run(version, zone: str, states: dict[str, str]) -> TestRun:
    """A finished run whose results are `states` (check name -> state), as the runner leaves."""
    run = TestRun.objects.create(
        version=version,
        zone=Zone.objects.get(code=zone),
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
        states = all_checks()
        if zone == "nl-ams-1":
            states["reboot"] = CheckState.FAILED
        finished_run(version, zone, states)
    assert orchestration.record_verdict(version) == VersionState.TEST_FAILED
    verdict = orchestration.verdict(version)
    assert not verdict.passed
    assert "reboot failed in nl-ams-1: boot id did not change after reboot" in verdict.reason

    # Re-running only that cell, which passes this time, makes every cell green.
    finished_run(version, "nl-ams-1", {"reboot": CheckState.PASSED})
    grid = orchestration.matrix(version)
    assert grid.all_passed and grid.passed == grid.total == 24
    assert orchestration.record_verdict(version) == VersionState.TESTED
    assert orchestration.verdict(version).passed


@pytest.mark.parametrize(
    ("state", "words"),
    [(CheckState.ERROR, "could not run in"), (CheckState.CANCELLED, "was cancelled in")],
)
def test_the_verdict_says_a_cell_errored_or_was_cancelled_not_that_it_failed(
    version, state, words
) -> None:
    for zone in ZONES:
        states = all_checks()
        if zone == "fr-par-1":
            states["backup"] = state
        finished_run(version, zone, states)
    reason = orchestration.verdict(version).reason
    assert f"backup {words} fr-par-1" in reason and "failed" not in reason


def test_not_applicable_is_never_counted_as_passed(version) -> None:
    for zone in ZONES:
        states = all_checks()
        states["dns"] = CheckState.NOT_APPLICABLE
        finished_run(version, zone, states)
    verdict = orchestration.verdict(version)
    assert not verdict.passed
    assert "could not be applied on this cloud" in verdict.reason
    assert orchestration.record_verdict(version) == VersionState.PUBLISHED  # no verdict either way


def test_a_check_missing_in_one_zone_keeps_the_version_untested(version) -> None:
    finished_run(version, "fr-par-1", all_checks())
    verdict = orchestration.verdict(version)
    assert not verdict.passed and "12 of 24" in verdict.reason
    assert orchestration.record_verdict(version) == VersionState.PUBLISHED


def test_the_matrix_costs_the_same_queries_with_a_long_history(version) -> None:
    finished_run(version, "fr-par-1", all_checks(CheckState.FAILED))
    with CaptureQueriesContext(connection) as few:
        orchestration.matrix(version)
    for _ in range(30):
        for zone in ZONES:
            finished_run(version, zone, all_checks())
    with CaptureQueriesContext(connection) as many:
        grid = orchestration.matrix(version)
    assert len(many) == len(few)
    assert grid.all_passed


def test_the_matrix_panel_computes_the_matrix_once_per_request(version, viewer) -> None:
    for zone in ZONES:
        finished_run(version, zone, all_checks())
    client = logged_in(viewer)
    with CaptureQueriesContext(connection) as ctx:
        panel = client.get(reverse("builds:test_matrix", args=[version.pk]), HTTP_HX_REQUEST="true")
    assert panel.status_code == 200 and "passed in every enabled zone" in panel.content.decode()
    latest_per_cell = [q for q in ctx.captured_queries if "MAX(" in q["sql"].upper()]
    assert len(latest_per_cell) == 1


def test_viewers_see_the_matrix_and_the_log_but_cannot_rerun(version, viewer) -> None:
    run = finished_run(version, "fr-par-1", {**all_checks(), "reboot": CheckState.FAILED})
    client = logged_in(viewer)
    panel = client.get(reverse("builds:test_matrix", args=[version.pk])).content.decode()
    assert 'data-check="reboot" data-state="failed"' in panel
    assert "Re-run" not in panel
    result = run.results.get(check_name="reboot")
    page = client.get(reverse("builds:check_log", args=[result.pk])).content.decode()
    assert "boot id did not change after reboot" in page and "$ reboot" in page
    response = client.post(
        reverse("builds:test_rerun", args=[version.pk]), {"zone": "fr-par-1", "check": "reboot"}
    )
    assert response.status_code == 403
    assert TestRun.objects.count() == 1


def test_rerun_one_cell_one_zone_or_the_failed_cells(
    version, manager, django_capture_on_commit_callbacks
) -> None:
    finished_run(version, "fr-par-1", {**all_checks(), "reboot": CheckState.FAILED})
    finished_run(version, "nl-ams-1", {**all_checks(), "dns": CheckState.ERROR})
    client = logged_in(manager)
    url = reverse("builds:test_rerun", args=[version.pk])
    panel = client.get(reverse("builds:test_matrix", args=[version.pk])).content.decode()
    assert "Re-run failed cells" in panel and 'data-testid="rerun-cell"' in panel

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"zone": "fr-par-1", "check": "reboot"})
    cell = TestRun.objects.order_by("-id").first()
    assert cell.zone.code == "fr-par-1" and cell.checks == ["reboot"]
    assert cell.state == TestRunState.QUEUED and cell.results.get().state == CheckState.PENDING
    # The matrix shows the cell queued at once, and keeps polling while it is.
    grid = orchestration.matrix(version)
    assert grid.cell("fr-par-1", StorageType.LOCAL, "reboot").state == CheckState.PENDING and grid.active
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == orchestration.RUN_TASK and queued.task["args"] == ([cell.pk],)
    assert AuditEntry.objects.filter(action="tests.rerun").count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"failed": "1"})
    # fr-par-1's reboot is pending again (not failed), so only nl-ams-1's dns is re-run.
    failed_run = TestRun.objects.order_by("-id").first()
    assert (failed_run.zone.code, failed_run.checks) == ("nl-ams-1", ["dns"])
    assert TestRun.objects.count() == 4

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"zone": "nl-ams-1", "keep": "1"})
    zone_run = TestRun.objects.order_by("-id").first()
    assert zone_run.checks == orchestration.check_names() and zone_run.keep_resources_on_failure


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"zone": "xx-nowhere-1"}, "is not an enabled zone"),
        ({"zone": "fr-par-1", "check": "teleport"}, "There is no check named"),
        ({"check": "reboot"}, "needs its zone"),
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


def test_cancel_asks_the_active_runs_to_stop(version, manager) -> None:
    [run] = orchestration.create_runs(version, [Zone.objects.get(code="fr-par-1")])
    logged_in(manager).post(reverse("builds:test_cancel", args=[version.pk]))
    run.refresh_from_db()
    assert run.cancel_requested and run.cancel_is_requested()
