"""A viewer reads everything and changes nothing: the pages show no action button, and the
server refuses the state-changing requests a viewer could still send from the browser."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import APIResponse, Page, expect

from builds.models import Build
from catalog.models import AuditEntry, Image, RecipeStep, UpstreamLifecycle, Zone
from tests.browser.conftest import csrf_token, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACTION_BUTTONS = [
    "Rebuild",
    "Edit",
    "Add a step",
    "Remove",
    "Import EOL dates",
    "Enable",
    "Disable",
    "Save date",
    "Save step",
    "Cancel",
    "Retry",
    "↑",
    "↓",
]


def assert_no_action_button(page: Page) -> None:
    for name in ACTION_BUTTONS:
        for role in ("button", "link"):
            expect(page.get_by_role(role, name=name, exact=True)).to_have_count(0)
    for test_id in ("rebuild", "import-eol", "add-step", "edit-step", "save-step", "retry"):
        expect(page.get_by_test_id(test_id)).to_have_count(0)
    expect(page.locator("main form[method=post]")).to_have_count(0)


def post(page: Page, url: str, data: dict[str, str] | None = None) -> APIResponse:
    """POST from the browser's own session, with its CSRF token, as a page script could."""
    return page.request.post(
        url, form=data or {}, headers={"X-CSRFToken": csrf_token(page)}, max_redirects=0
    )


@pytest.fixture
def failed_build(catalogue: dict[str, Image]) -> Build:
    return Build.objects.create(
        image=catalogue["noble"], state="failed", failure_stage="fetch", failure_reason="404"
    )


def test_a_viewer_sees_no_action_button_on_any_page(
    page: Page,
    js_errors: list[str],
    live_server: Any,
    viewer: User,
    catalogue: dict[str, Image],
    zones: list[Zone],
    failed_build: Build,
) -> None:
    login(page, live_server, viewer)
    expect(page.get_by_test_id("role")).to_have_text("viola · Viewer")
    page.goto(f"{live_server.url}/images/")
    expect(page.locator("#catalogue-table tr[data-label]")).to_have_count(4)
    assert_no_action_button(page)

    page.goto(f"{live_server.url}{catalogue['noble'].get_absolute_url()}")
    expect(page.get_by_test_id("steps").locator("tr[data-step-type]")).to_have_count(2)
    expect(page.get_by_test_id("image-builds")).to_be_visible()  # loaded by htmx
    assert_no_action_button(page)

    page.goto(f"{live_server.url}/builds/")
    expect(page.get_by_role("link", name=f"#{failed_build.pk}")).to_be_visible()
    assert_no_action_button(page)

    page.goto(f"{live_server.url}{failed_build.get_absolute_url()}")
    expect(page.get_by_test_id("build-state")).to_have_text("Failed")
    assert_no_action_button(page)

    page.goto(f"{live_server.url}/zones/")
    expect(page.locator("#zone-fr-par-1")).to_contain_text("enabled")
    expect(page.locator("#zone-nl-ams-1")).to_contain_text("disabled")
    assert_no_action_button(page)

    assert js_errors == []


def test_the_server_refuses_a_viewer_s_state_changing_posts(
    page: Page,
    live_server: Any,
    viewer: User,
    catalogue: dict[str, Image],
    zones: list[Zone],
    failed_build: Build,
) -> None:
    noble = catalogue["noble"]
    step = RecipeStep.objects.filter(image=noble).first()
    assert step is not None
    login(page, live_server, viewer)
    base = f"{live_server.url}/images/{noble.label}"
    attempts = [
        (f"{base}/steps/add/", {"type": "install_packages", "p_packages": "nmap", "enabled": "on"}),
        (f"{base}/steps/{step.pk}/save/", {"type": "install_packages", "p_packages": "nmap"}),
        (f"{base}/steps/{step.pk}/move/", {"direction": "down"}),
        (f"{base}/steps/{step.pk}/delete/", {}),
        (
            f"{base}/dates/",
            {"field": "security_support_end", "value": "2099-01-01", "reason": "viewer"},
        ),
        (f"{live_server.url}/builds/image/{noble.label}/rebuild/", {}),
        (f"{live_server.url}/builds/{failed_build.pk}/retry/", {}),
        (f"{live_server.url}/eol/import/", {}),
        (f"{live_server.url}/zones/nl-ams-1/toggle/", {}),
    ]
    recipe = list(RecipeStep.objects.values_list("id", "position", "type", "params"))

    for url, data in attempts:
        response = post(page, url, data)
        assert response.status == 403, url
        # Refused for the permission, not for a missing or wrong CSRF token.
        assert "CSRF" not in response.text(), url

    assert list(RecipeStep.objects.values_list("id", "position", "type", "params")) == recipe
    assert Build.objects.count() == 1
    failed_build.refresh_from_db()
    assert failed_build.state == "failed"
    assert UpstreamLifecycle.objects.get(image=noble).security_support_end.year != 2099
    assert dict(Zone.objects.values_list("code", "enabled")) == {
        "fr-par-1": True,
        "nl-ams-1": False,
    }
    assert not AuditEntry.objects.exists()


def test_the_same_post_from_an_administrator_goes_through(
    page: Page, live_server: Any, admin_user: User, zones: list[Zone]
) -> None:
    """The control of the test above: its requests are refused for the role only."""
    login(page, live_server, admin_user)

    url = f"{live_server.url}/zones/nl-ams-1/toggle/"
    asked = post(page, url, {"action": "enable"})  # the confirmation page; nothing changes yet
    assert asked.status == 200 and not Zone.objects.get(code="nl-ams-1").enabled
    response = post(page, url, {"action": "enable", "confirm": "yes"})

    assert response.status == 302
    assert Zone.objects.get(code="nl-ams-1").enabled
    assert AuditEntry.objects.get().actor == admin_user
