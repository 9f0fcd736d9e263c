"""The test matrix of a version page in a real browser: it follows a running test run by
itself and stops polling once the run has ended; a cell opens its log with the failing
assertion; Re-run (one cell, one row, the failed cells) and Cancel work from the buttons;
a viewer sees the matrix but no button, and the server refuses the viewer's forged posts;
a version with both storage types has a row per zone and storage type, and Re-run of a
Block Storage cell re-runs it on Block Storage only.

No worker runs: the test writes the rows a worker would write (the live server shares this
process's in-memory database), and Re-run only queues django-q2 tasks that nothing consumes,
so no server is ever booted.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_q.models import OrmQ
from playwright.sync_api import Browser, Locator, Page, expect

from builds.choices import CheckState, TestRunState
from builds.models import CheckResult, TestRun
from builds.testing import orchestration
from builds.views import test_runs as test_run_views
from catalog.choices import StorageType, VersionState
from catalog.models import AuditEntry, ImageVersion, Zone
from tests.browser.conftest import TIMEOUT_MS, csrf_token, login
from tests.catalog.factories import os_image
from tests.lifecycle import version_with_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ZONES = ("fr-par-1", "nl-ams-1")
POLL_SECONDS = 1
REBOOT_FAILURE = "boot id did not change after reboot"
REBOOT_LOG = "$ cat /proc/sys/kernel/random/boot_id\n3f1c0e2a\n(rebooted)\n3f1c0e2a\n"


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll every second (the live server runs in this process) so the tests wait less."""
    monkeypatch.setattr(test_run_views, "POLL_SECONDS", POLL_SECONDS)


@pytest.fixture
def version(transactional_db: None) -> ImageVersion:
    """A published version, available in two enabled zones on local storage (one row per
    zone)."""
    image = os_image("debian_bookworm")
    image.storage_types = [StorageType.LOCAL]
    image.save()
    return version_with_images(image, "2026-11-20", state=VersionState.PUBLISHED, zones=ZONES)


def zone(code: str) -> Zone:
    return Zone.objects.get(code=code)


def running_runs(version: ImageVersion) -> dict[str, TestRun]:
    """One run per zone as the test stage queues them; fr-par-1's worker has started `network`."""
    runs = {
        r.zone.code: r for r in orchestration.create_runs(version, orchestration.enabled_zones())
    }
    TestRun.objects.filter(pk=runs["fr-par-1"].pk).update(
        state=TestRunState.RUNNING, started_at=timezone.now()
    )
    report(runs["fr-par-1"], "network", CheckState.RUNNING)
    return runs


def report(run: TestRun, check: str, state: str, reason: str = "", log: str = "") -> None:
    """What the runner writes when a check starts or ends."""
    fields: dict[str, Any] = {"state": state, "reason": reason, "log": log}
    if state not in (CheckState.PENDING, CheckState.RUNNING):
        fields.update(duration=4.0, finished_at=timezone.now())
    CheckResult.objects.filter(test_run=run, check_name=check).update(**fields)


def finish(run: TestRun, state: str = TestRunState.FINISHED) -> None:
    TestRun.objects.filter(pk=run.pk).update(state=state, finished_at=timezone.now())


def finished_run(version: ImageVersion, code: str, bad: dict[str, str]) -> TestRun:
    """A finished run of every check in `code`: those of `bad` in the given state, the rest
    passed."""
    [run] = orchestration.create_runs(version, [zone(code)])
    for name in orchestration.check_names():
        state = bad.get(name, CheckState.PASSED)
        reason = REBOOT_FAILURE if name == "reboot" else "the guest did not answer"
        report(run, name, state, reason if state != CheckState.PASSED else "", f"$ {name}\n")
    finish(run)
    return run


def matrix(page: Page) -> Locator:
    return page.get_by_test_id("test-matrix")


def cell(page: Page, code: str, check: str) -> Locator:
    return matrix(page).locator(f"tr[data-zone='{code}'] td[data-check='{check}']")


def expect_cells(page: Page, code: str, state: str, checks: list[str] | None = None) -> None:
    for name in checks or orchestration.check_names():
        expect(cell(page, code, name)).to_have_attribute("data-state", state)


def open_version(page: Page, live_server: Any, version: ImageVersion) -> None:
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    # The version page loads the matrix with htmx.
    expect(matrix(page).locator("tr[data-zone]")).to_have_count(len(ZONES))


def test_the_matrix_follows_a_running_test_run_and_stops_polling_when_it_ends(
    page: Page, js_errors: list[str], live_server: Any, manager: User, version: ImageVersion
) -> None:
    runs = running_runs(version)
    login(page, live_server, manager)
    open_version(page, live_server, version)
    expect(matrix(page)).to_have_attribute("hx-trigger", f"every {POLL_SECONDS}s")
    expect(cell(page, "fr-par-1", "network")).to_have_attribute("data-state", "running")
    expect(cell(page, "fr-par-1", "network")).to_contain_text("Running")
    expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "pending")
    expect_cells(page, "nl-ams-1", "pending")
    expect(page.get_by_test_id("test-verdict")).to_contain_text("0 of 24 checks passed")
    expect(page.get_by_test_id("cancel-tests")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    # The worker moves on: the page follows while the run is still active.
    report(runs["fr-par-1"], "network", CheckState.PASSED)
    report(runs["fr-par-1"], "reboot", CheckState.RUNNING)
    expect(cell(page, "fr-par-1", "network")).to_have_attribute("data-state", "passed")
    expect(cell(page, "fr-par-1", "network")).to_contain_text("Passed")
    expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "running")
    expect(page.get_by_test_id("test-verdict")).to_contain_text("1 of 24 checks passed")
    expect(matrix(page)).to_have_attribute("hx-trigger", f"every {POLL_SECONDS}s")

    # Both runs end; reboot failed in fr-par-1 with an assertion in plain words.
    for run in runs.values():
        for name in orchestration.check_names():
            report(run, name, CheckState.PASSED, log=f"$ {name}\nok\n")
        finish(run)
    report(runs["fr-par-1"], "reboot", CheckState.FAILED, REBOOT_FAILURE, REBOOT_LOG)
    failed = cell(page, "fr-par-1", "reboot")
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed).to_contain_text("Failed")
    expect(failed).to_have_attribute("title", REBOOT_FAILURE)
    expect_cells(page, "nl-ams-1", "passed")
    expect(page.get_by_test_id("test-verdict")).to_contain_text(
        f"reboot failed in fr-par-1: {REBOOT_FAILURE}"
    )
    # The run has ended: the region no longer polls, and offers Re-run instead of Cancel.
    expect(matrix(page)).to_have_attribute("data-active", "0")
    expect(matrix(page)).not_to_have_attribute("hx-trigger", re.compile(r".*"))
    expect(page.get_by_test_id("cancel-tests")).to_have_count(0)
    expect(page.get_by_test_id("rerun-failed")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True, "the page reloaded"

    # Nothing asks for the matrix any more: a live poll timer would fire within one period.
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/tests/" in r.url else None)
    page.wait_for_timeout(POLL_SECONDS * 1500)
    assert polls == []

    # The failed cell opens its log, which says why in plain words and no longer polls.
    failed.get_by_role("link", name="Failed").click()
    result = CheckResult.objects.get(test_run=runs["fr-par-1"], check_name="reboot")
    expect(page).to_have_url(f"{live_server.url}/builds/checks/{result.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Reboot in fr-par-1")
    expect(page.get_by_test_id("check-failure")).to_have_text(f"Failed: {REBOOT_FAILURE}")
    expect(page.get_by_test_id("check-log")).to_contain_text("(rebooted)")
    expect(page.locator("#check-log")).not_to_have_attribute("hx-trigger", re.compile(r".*"))
    assert js_errors == []


def test_a_manager_reruns_one_cell_the_failed_cells_and_one_zone(
    page: Page, js_errors: list[str], live_server: Any, manager: User, version: ImageVersion
) -> None:
    finished_run(version, "fr-par-1", {"reboot": CheckState.FAILED, "rescue": CheckState.FAILED})
    finished_run(version, "nl-ams-1", {"dns": CheckState.ERROR})
    others = [n for n in orchestration.check_names() if n not in ("reboot", "rescue", "dns")]
    login(page, live_server, manager)
    open_version(page, live_server, version)
    expect(matrix(page)).to_have_attribute("data-active", "0")

    # One cell: only reboot in fr-par-1 is queued again.
    page.get_by_role("button", name="Re-run reboot in fr-par-1").click()
    expect(page.locator(".messages")).to_contain_text(
        "Re-running reboot in fr-par-1 on local storage."
    )
    expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "pending")
    expect(cell(page, "fr-par-1", "rescue")).to_have_attribute("data-state", "failed")
    expect(cell(page, "nl-ams-1", "dns")).to_have_attribute("data-state", "error")
    expect_cells(page, "fr-par-1", "passed", others)
    expect_cells(page, "nl-ams-1", "passed", others)
    expect(matrix(page)).to_have_attribute("hx-trigger", f"every {POLL_SECONDS}s")
    run = TestRun.objects.order_by("-id").first()
    assert (run.zone.code, run.checks, run.state) == ("fr-par-1", ["reboot"], TestRunState.QUEUED)

    # The failed cells: rescue in fr-par-1 and dns in nl-ams-1 (reboot is pending, not failed).
    page.get_by_test_id("rerun-failed").click()
    expect(page.locator(".messages")).to_contain_text("Re-running the failed checks.")
    expect(cell(page, "fr-par-1", "rescue")).to_have_attribute("data-state", "pending")
    expect(cell(page, "nl-ams-1", "dns")).to_have_attribute("data-state", "pending")
    expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "pending")
    expect_cells(page, "fr-par-1", "passed", others)
    expect_cells(page, "nl-ams-1", "passed", others)
    expect(page.get_by_test_id("rerun-failed")).to_have_count(0)
    assert {(r.zone.code, tuple(r.checks)) for r in TestRun.objects.order_by("-id")[:2]} == {
        ("fr-par-1", ("rescue",)),
        ("nl-ams-1", ("dns",)),
    }

    # One zone: every check of nl-ams-1, and fr-par-1 keeps its cells.
    matrix(page).locator("tr[data-zone='nl-ams-1']").get_by_test_id("rerun-zone").click()
    expect(page.locator(".messages")).to_contain_text(
        "Re-running every check in nl-ams-1 on local storage."
    )
    expect_cells(page, "nl-ams-1", "pending")
    expect_cells(page, "fr-par-1", "passed", others)
    expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "pending")
    expect(cell(page, "fr-par-1", "rescue")).to_have_attribute("data-state", "pending")
    zone_run = TestRun.objects.order_by("-id").first()
    assert (zone_run.zone.code, zone_run.checks) == ("nl-ams-1", orchestration.check_names())

    # Each Re-run only queued one task (its zones run in parallel) and nothing took it: no
    # worker runs here, so no server is booted.
    queued = [q.task for q in OrmQ.objects.order_by("id")]
    assert [q["func"] for q in queued] == [orchestration.RUN_TASK] * 3
    assert sorted(pk for q in queued for pk in q["args"][0]) == sorted(
        TestRun.objects.filter(state=TestRunState.QUEUED).values_list("pk", flat=True)
    )
    assert TestRun.objects.filter(state=TestRunState.FINISHED).count() == 2
    assert AuditEntry.objects.filter(action="tests.rerun").count() == 3
    assert js_errors == []


def test_a_manager_cancels_a_running_test_run(
    page: Page, js_errors: list[str], live_server: Any, manager: User, version: ImageVersion
) -> None:
    runs = running_runs(version)
    login(page, live_server, manager)
    open_version(page, live_server, version)

    page.get_by_test_id("cancel-tests").click()
    expect(page.locator(".messages")).to_contain_text("Cancelling 2 test run(s)")
    assert all(r.cancel_is_requested() for r in runs.values())
    # Asked once is enough: the matrix says so instead of offering Cancel again.
    expect(page.get_by_test_id("cancelling")).to_be_visible()
    expect(page.get_by_test_id("cancel-tests")).to_have_count(0)
    expect(matrix(page)).to_have_attribute("hx-trigger", f"every {POLL_SECONDS}s")

    # The workers stop (as the runner does on a cancel request) and the page follows.
    for run in runs.values():
        CheckResult.objects.filter(test_run=run).update(
            state=CheckState.CANCELLED, reason="the test run was cancelled"
        )
        finish(run, TestRunState.CANCELLED)
    expect_cells(page, "fr-par-1", "cancelled")
    expect_cells(page, "nl-ams-1", "cancelled")
    expect(cell(page, "fr-par-1", "network")).to_contain_text("Cancelled")
    expect(matrix(page)).not_to_have_attribute("hx-trigger", re.compile(r".*"))
    expect(page.get_by_test_id("cancelling")).to_have_count(0)
    expect(page.get_by_test_id("rerun-failed")).to_be_visible()
    assert AuditEntry.objects.filter(action="tests.cancel_requested").count() == 1
    assert not OrmQ.objects.exists()
    assert js_errors == []


def test_a_viewer_sees_the_matrix_and_logs_but_no_button_and_cannot_post(
    page: Page, js_errors: list[str], live_server: Any, viewer: User, version: ImageVersion
) -> None:
    # A failed cell in fr-par-1 and a running run in nl-ams-1: a manager would see every button.
    failed = finished_run(version, "fr-par-1", {"reboot": CheckState.FAILED})
    [active] = orchestration.create_runs(version, [zone("nl-ams-1")])
    login(page, live_server, viewer)
    open_version(page, live_server, version)

    expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "failed")
    expect_cells(page, "nl-ams-1", "pending")
    for test_id in ("rerun-cell", "rerun-zone", "rerun-failed", "cancel-tests"):
        expect(page.get_by_test_id(test_id)).to_have_count(0)
    expect(matrix(page).locator("form")).to_have_count(0)
    expect(matrix(page).get_by_role("button")).to_have_count(0)

    cell(page, "fr-par-1", "reboot").get_by_role("link", name="Failed").click()
    expect(page.get_by_test_id("check-failure")).to_contain_text(REBOOT_FAILURE)

    # The same requests the buttons would send, from the viewer's own session and token.
    base = f"{live_server.url}/builds/versions/{version.pk}/tests"
    attempts = [
        (f"{base}/rerun/", {"zone": "fr-par-1", "check": "reboot"}),
        (f"{base}/rerun/", {"zone": "nl-ams-1"}),
        (f"{base}/rerun/", {"failed": "1"}),
        (f"{base}/cancel/", {}),
    ]
    for url, data in attempts:
        response = page.request.post(
            url, form=data, headers={"X-CSRFToken": csrf_token(page)}, max_redirects=0
        )
        assert response.status == 403, (url, data)
        assert "CSRF" not in response.text(), url  # refused for the role, not the token

    assert set(TestRun.objects.values_list("pk", flat=True)) == {failed.pk, active.pk}
    assert not active.cancel_is_requested()
    assert not OrmQ.objects.exists() and not AuditEntry.objects.exists()
    assert js_errors == []


def test_without_javascript_the_matrix_link_opens_a_whole_page_whose_buttons_work(
    browser: Browser, live_server: Any, manager: User, version: ImageVersion
) -> None:
    finished_run(version, "fr-par-1", {"reboot": CheckState.FAILED})
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        login(page, live_server, manager)
        page.goto(f"{live_server.url}{version.get_absolute_url()}")
        page.get_by_role("link", name="Test matrix").click()
        expect(page).to_have_url(f"{live_server.url}/builds/versions/{version.pk}/tests/")
        # A page of the site (header, title), not a bare fragment.
        expect(page.get_by_test_id("role")).to_contain_text("manon")
        expect(page).to_have_title(re.compile(r"Tests of .*2026-11-20"))
        expect(cell(page, "fr-par-1", "reboot")).to_have_attribute("data-state", "failed")

        page.get_by_test_id("rerun-failed").click()
        expect(page).to_have_url(f"{live_server.url}{version.get_absolute_url()}")
        expect(page.locator(".messages")).to_contain_text("Re-running the failed checks.")
        run = TestRun.objects.order_by("-id").first()
        assert (run.zone.code, run.checks) == ("fr-par-1", ["reboot"])
    finally:
        context.close()


def test_both_storage_types_have_their_rows_and_a_block_cell_reruns_on_block_storage(
    page: Page, js_errors: list[str], live_server: Any, manager: User
) -> None:
    image = os_image("debian_trixie")
    both = version_with_images(image, "2026-11-20", state=VersionState.PUBLISHED, zones=ZONES)
    for run in orchestration.create_runs(both, orchestration.enabled_zones()):
        failed = (run.zone.code, run.storage_type) == ("fr-par-1", StorageType.SBS)
        for name in orchestration.check_names():
            bad = failed and name == "archive"
            report(run, name, CheckState.FAILED if bad else CheckState.PASSED, "detached")
        finish(run)
    login(page, live_server, manager)
    page.goto(f"{live_server.url}{both.get_absolute_url()}")
    rows = matrix(page).locator("tr[data-zone]")
    expect(rows).to_have_count(4)
    block_row = matrix(page).locator("tr[data-zone='fr-par-1'][data-storage='instance_sbs']")
    expect(block_row).to_contain_text("Block Storage")
    expect(block_row.locator("td[data-check='archive']")).to_have_attribute("data-state", "failed")
    expect(page.get_by_test_id("test-verdict")).to_contain_text(
        "archive failed in fr-par-1 on Block Storage: detached"
    )

    page.get_by_role("button", name="Re-run archive in fr-par-1 on Block Storage").click()
    expect(page.locator(".messages")).to_contain_text(
        "Re-running archive in fr-par-1 on Block Storage."
    )
    expect(block_row.locator("td[data-check='archive']")).to_have_attribute("data-state", "pending")
    local_row = matrix(page).locator("tr[data-zone='fr-par-1'][data-storage='instance_local']")
    expect(local_row.locator("td[data-check='archive']")).to_have_attribute("data-state", "passed")
    run = TestRun.objects.order_by("-id").first()
    assert (run.zone.code, run.storage_type, run.checks) == (
        "fr-par-1",
        StorageType.SBS,
        ["archive"],
    )
    assert js_errors == []
