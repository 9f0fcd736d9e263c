"""After Rebuild on the image page, every region the action changed shows it, without a reload:
the Builds section lists the queued build and the Audit log its request."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from builds.models import Build
from tests.browser.conftest import login
from tests.catalog.factories import os_image

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_rebuild_updates_the_builds_and_audit_sections_in_place(
    page: Page, js_errors: list[str], live_server: Any, manager: User
) -> None:
    image = os_image("debian_bookworm")
    login(page, live_server, manager)
    page.goto(f"{live_server.url}{image.get_absolute_url()}")
    expect(page.get_by_test_id("image-builds")).to_contain_text("No build yet")
    expect(page.locator("#image-audit")).to_contain_text("Nothing recorded yet")
    page.evaluate("window.notReloaded = true")

    page.get_by_test_id("rebuild").click()

    expect(page.get_by_test_id("queued")).to_contain_text("Queued")
    build = Build.objects.get(image=image)
    expect(page.get_by_test_id("image-builds")).to_contain_text(f"#{build.pk}")
    expect(page.get_by_test_id("image-builds")).not_to_contain_text("No build yet")
    expect(page.locator("#image-audit")).to_contain_text("build.requested")
    assert page.evaluate("window.notReloaded") is True
    assert js_errors == []
