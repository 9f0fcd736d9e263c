"""The catalogue's timeline in a browser, with and without JavaScript: the drawing is server-
rendered SVG, every mark has a title, the table beside it holds the same dates, and the image
page's labels do not overprint one another."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from catalog.models import Image
from lifecycle import deprecation
from tests.browser.conftest import TIMEOUT_MS, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def check_timeline(page: Page, live_server: Any, focal: Image) -> None:
    page.goto(f"{live_server.url}/lifecycle/timeline/")
    drawing = page.get_by_test_id("catalogue-timeline")
    expect(drawing).to_be_visible()
    assert drawing.evaluate("svg => svg.getBoundingClientRect().height") > 50
    groups = drawing.locator("text.tl-group").all_text_contents()
    assert groups == ["Debian", "Ubuntu", "InstantApps"]
    # The dates are those of the day the page was drawn (a run across midnight draws the
    # next day's): read it from the page, and check it is today or yesterday.
    expect(drawing.locator("line.tl-today > title")).to_have_text(re.compile(r"^Today: \S+$"))
    drawn = drawing.locator("line.tl-today > title").text_content() or ""
    today = dt.date.fromisoformat(drawn.removeprefix("Today: "))
    assert (timezone.localdate() - today).days in (0, 1)
    planned = deprecation.plan_for(focal, today).date
    assert planned == today + dt.timedelta(days=7)
    titles = drawing.locator("path.tl-deprecation > title").all_text_contents()
    assert f"Deprecation on this platform: {planned:%Y-%m-%d}" in titles
    row = page.locator('tr[data-image="ubuntu_focal"]')
    expect(row.locator('td[data-col="deprecation"]')).to_have_text(f"{planned:%Y-%m-%d}")

    # Filtered like the overview, from the URL.
    page.goto(f"{live_server.url}/lifecycle/timeline/?q=focal")
    expect(page.locator("tr[data-image]")).to_have_count(1)
    expect(page.get_by_test_id("catalogue-timeline").locator("text.tl-name")).to_have_text(
        "ubuntu_focal"
    )

    # The image page draws with the same renderer; no two labels overlap.
    page.goto(f"{live_server.url}{focal.get_absolute_url()}")
    labels = page.get_by_test_id("image-timeline").locator("text.tl-label")
    expect(labels.filter(has_text="Today")).to_have_count(1)
    boxes = labels.evaluate_all(
        "ts => ts.map(t => { const b = t.getBoundingClientRect();"
        " return [b.left, b.right, b.top, b.bottom, t.textContent]; })"
    )
    for n, (left, right, top, bottom, text) in enumerate(boxes):
        for o_left, o_right, o_top, o_bottom, other in boxes[n + 1 :]:
            apart = right <= o_left or o_right <= left or bottom <= o_top or o_bottom <= top
            assert apart, f"{text!r} overprints {other!r}"


def test_the_timeline_with_javascript(
    page: Page,
    js_errors: list[str],
    live_server: Any,
    viewer: User,
    catalogue: dict[str, Image],
    settings: Any,
) -> None:
    settings.DEPRECATION_GRACE_DAYS = 90
    settings.NOTICE_OFFSETS_DAYS = [90, 30, 7, 0]
    login(page, live_server, viewer)
    check_timeline(page, live_server, catalogue["focal"])
    assert js_errors == []


def test_the_timeline_without_javascript(
    browser: Browser,
    live_server: Any,
    viewer: User,
    catalogue: dict[str, Image],
    settings: Any,
) -> None:
    settings.DEPRECATION_GRACE_DAYS = 90
    settings.NOTICE_OFFSETS_DAYS = [90, 30, 7, 0]
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        login(page, live_server, viewer)
        check_timeline(page, live_server, catalogue["focal"])
    finally:
        context.close()
