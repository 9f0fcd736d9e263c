"""Signing in: every page needs a session, a wrong password is refused, a right one lands
on the home page with the user's role shown."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_anonymous_visitor_is_sent_to_the_login_page(page: Page, live_server: Any) -> None:
    page.goto(f"{live_server.url}/")

    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_count(0)


def test_a_wrong_password_shows_the_error_and_signs_nobody_in(
    page: Page, live_server: Any, manager: User
) -> None:
    page.goto(f"{live_server.url}/")
    page.get_by_label("User name").fill(manager.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()

    expect(page.locator(".error-banner")).to_contain_text("did not match")
    expect(page.get_by_test_id("role")).to_have_count(0)
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))


def test_the_right_password_lands_on_the_home_page_with_the_role_shown(
    page: Page, live_server: Any, manager: User
) -> None:
    page.goto(f"{live_server.url}/")
    page.get_by_label("User name").fill(manager.username)
    page.get_by_label("Password").fill("pw-" + manager.username)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="What needs you today")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("manon · Catalogue manager")


@pytest.mark.parametrize(
    ("user_fixture", "role"),
    [("viewer", "Viewer"), ("release_manager", "Release manager"), ("admin_user", "Administrator")],
)
def test_each_role_is_named_in_the_top_bar(
    page: Page, live_server: Any, request: pytest.FixtureRequest, user_fixture: str, role: str
) -> None:
    user: User = request.getfixturevalue(user_fixture)
    login(page, live_server, user)

    expect(page.get_by_test_id("role")).to_have_text(f"{user.username} · {role}")
