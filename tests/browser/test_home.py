"""The home page in a browser: every kind of item with its link and the navigation's count,
an EOL change accepted from it, and the empty state."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from catalog.models import AuditEntry, UpstreamLifecycle
from tests.browser.conftest import login
from tests.catalog.factories import os_image
from tests.lifecycle.home_data import seed_every_kind

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECTIONS = [
    "builds",
    "tests",
    "eol",
    "deprecations",
    "stale",
    "serials",
    "janitor",
    "requests",
    "zones",
]


def test_with_nothing_to_do_the_home_page_says_so(
    page: Page, js_errors: list[str], live_server: Any, viewer: User
) -> None:
    os_image("debian_bookworm")
    login(page, live_server, viewer)

    expect(page.get_by_role("heading", name="What needs you today")).to_be_visible()
    expect(page.get_by_test_id("home-empty")).to_contain_text("Nothing needs you today")
    expect(page.get_by_test_id("nav-home")).to_have_text("Today")
    for key in SECTIONS:
        expect(page.get_by_test_id(f"home-{key}")).to_have_count(0)
    # the list of images stays one click away
    page.get_by_role("link", name="the list of images").click()
    expect(page.locator("#catalogue-table tr[data-label]")).to_have_count(1)
    assert js_errors == []


def test_every_kind_of_item_links_to_where_it_is_acted_on_and_an_eol_is_accepted(
    page: Page, js_errors: list[str], live_server: Any, manager: User
) -> None:
    seeded = seed_every_kind()
    login(page, live_server, manager)

    expect(page.get_by_test_id("nav-home")).to_contain_text("9")
    expect(page.get_by_test_id("home-empty")).to_have_count(0)
    for key in SECTIONS:
        expect(page.get_by_test_id(f"home-{key}")).to_be_visible()
    expect(page.get_by_test_id("home-tests")).to_contain_text("dns")
    expect(page.get_by_test_id("home-tests")).not_to_contain_text("ssh")
    expect(page.get_by_test_id("home-deprecations")).to_contain_text("sent 1")
    expect(page.get_by_test_id("home-deprecations")).to_contain_text("failed 1")
    expect(page.get_by_test_id("home-serials")).to_contain_text("20260201-2")
    expect(page.get_by_test_id("home-janitor")).to_contain_text("its test run ended")
    expect(page.get_by_test_id("home-requests")).to_contain_text("FreeBSD 14")
    expect(page.get_by_test_id("home-zones")).to_contain_text("fr-par-1")

    page.get_by_test_id("home-eol").get_by_role("button", name="Accept 2029-04-25").click()

    expect(page.locator(".messages")).to_contain_text("ubuntu_noble: EOL is now 2029-04-25")
    expect(page.get_by_test_id("home-eol")).to_have_count(0)
    expect(page.get_by_test_id("nav-home")).to_contain_text("8")
    row = UpstreamLifecycle.objects.get(pk=seeded.eol.pk)
    assert row.security_support_end == dt.date(2029, 4, 25)
    assert AuditEntry.objects.filter(action="eol.proposal_accepted", actor=manager).exists()

    page.get_by_test_id("home-builds").get_by_role(
        "link", name=f"#{seeded.failed_build.pk}"
    ).click()
    expect(page).to_have_url(f"{live_server.url}{seeded.failed_build.get_absolute_url()}")
    assert js_errors == []
