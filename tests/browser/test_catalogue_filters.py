"""The catalogue's filters: they update the table in place (no page load), write themselves
to the URL so that a filtered view can be shared, and the badges say which rows need care."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from catalog import overview
from catalog.models import Image
from tests.browser.conftest import login
from tests.catalog.factories import os_image

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def labels(page: Page) -> list[str]:
    return page.locator("#catalogue-table tbody tr[data-label]").evaluate_all(
        "rows => rows.map(r => r.dataset.label)"
    )


def test_typing_a_search_filters_the_table_in_place_and_writes_it_to_the_url(
    page: Page, js_errors: list[str], live_server: Any, viewer: User, catalogue: dict[str, Image]
) -> None:
    login(page, live_server, viewer)
    page.goto(f"{live_server.url}/images/")
    expect(page.get_by_test_id("row-count")).to_have_text("4 images")
    page.evaluate("window.samePage = 'still here'")

    page.get_by_test_id("search").press_sequentially("noble")

    expect(page.get_by_test_id("row-count")).to_have_text("1 image")
    assert labels(page) == ["ubuntu_noble"]
    expect(page).to_have_url(re.compile(r"[?&]q=noble(&|$)"))
    assert page.evaluate("window.samePage") == "still here"
    assert js_errors == []


def test_the_past_eol_filter_keeps_only_past_eol_rows_and_survives_a_reload(
    page: Page, live_server: Any, viewer: User, catalogue: dict[str, Image]
) -> None:
    login(page, live_server, viewer)
    page.goto(f"{live_server.url}/images/")
    page.evaluate("window.samePage = 'still here'")

    page.get_by_test_id("badge").select_option(label="Past upstream EOL")

    expect(page.get_by_test_id("row-count")).to_have_text("1 image")
    assert labels(page) == ["ubuntu_focal"]
    expect(page).to_have_url(re.compile(r"[?&]badge=past_eol(&|$)"))
    assert page.evaluate("window.samePage") == "still here"

    page.reload()

    assert page.evaluate("window.samePage") is None
    expect(page.get_by_test_id("row-count")).to_have_text("1 image")
    assert labels(page) == ["ubuntu_focal"]
    expect(page.get_by_test_id("badge")).to_have_value("past_eol")


def test_a_shared_filtered_url_opens_on_the_same_view(
    page: Page, live_server: Any, viewer: User, catalogue: dict[str, Image]
) -> None:
    login(page, live_server, viewer)

    page.goto(f"{live_server.url}/images/?q=ubuntu&badge=past_eol")

    assert labels(page) == ["ubuntu_focal"]
    expect(page.get_by_test_id("search")).to_have_value("ubuntu")
    expect(page.get_by_test_id("badge")).to_have_value("past_eol")


def test_the_rows_carry_past_eol_and_eol_soon_badges(
    page: Page, live_server: Any, viewer: User, catalogue: dict[str, Image]
) -> None:
    login(page, live_server, viewer)
    page.goto(f"{live_server.url}/images/")
    table = page.locator("#catalogue-table")

    expect(table.locator("tr[data-label=ubuntu_focal] [data-badge]")).to_have_text(["past EOL"])
    expect(table.locator("tr[data-label=debian_bookworm] [data-badge]")).to_have_text(["EOL soon"])
    expect(table.locator("tr[data-label=ubuntu_noble] [data-badge]")).to_have_count(0)
    # An InstantApp follows its base image's EOL.
    expect(table.locator("tr[data-label=wordpress]")).to_contain_text("on ubuntu_noble")
    expect(table.locator("tr[data-label=wordpress] [data-badge]")).to_have_count(0)


def test_going_back_after_leaving_a_filtered_catalogue_shows_the_whole_page(
    page: Page, live_server: Any, viewer: User, catalogue: dict[str, Image]
) -> None:
    login(page, live_server, viewer)
    page.goto(f"{live_server.url}/images/")
    page.get_by_test_id("badge").select_option("past_eol")
    expect(page).to_have_url(re.compile(r"badge=past_eol"))
    expect(page.get_by_test_id("row-count")).to_have_text("1 image")

    page.get_by_role("link", name="Ubuntu 20.04 Focal Fossa").click()
    expect(page.get_by_role("heading", name=re.compile("Focal Fossa"))).to_be_visible()
    page.go_back()

    expect(page.get_by_role("heading", name="Catalogue")).to_be_visible(timeout=5_000)
    expect(page.get_by_test_id("badge")).to_have_value("past_eol")
    assert labels(page) == ["ubuntu_focal"]


def test_the_pages_of_a_filtered_catalogue_keep_the_filter_in_place_and_in_the_url(
    page: Page, js_errors: list[str], live_server: Any, viewer: User, catalogue: dict[str, Image]
) -> None:
    for i in range(overview.PAGE_SIZE + 5):
        os_image(f"ubuntu_paged_{i:03d}")
    login(page, live_server, viewer)
    page.goto(f"{live_server.url}/images/")
    page.get_by_test_id("search").press_sequentially("paged")
    expect(page.get_by_test_id("row-count")).to_have_text(f"{overview.PAGE_SIZE + 5} images")
    page.evaluate("window.samePage = 'still here'")

    page.get_by_test_id("next-page").click()

    expect(page.get_by_test_id("page-number")).to_have_text("Page 2 of 2")
    assert labels(page) == [
        f"ubuntu_paged_{i:03d}" for i in range(overview.PAGE_SIZE, overview.PAGE_SIZE + 5)
    ]
    expect(page).to_have_url(re.compile(r"[?&]page=2(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]q=paged(&|$)"))
    assert page.evaluate("window.samePage") == "still here"

    page.get_by_test_id("previous-page").click()

    expect(page.get_by_test_id("page-number")).to_have_text("Page 1 of 2")
    assert len(labels(page)) == overview.PAGE_SIZE
    assert js_errors == []
