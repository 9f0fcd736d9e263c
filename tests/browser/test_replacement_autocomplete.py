"""The deprecation panel's replacement field: typing suggests a few matching images (htmx),
and the label chosen is checked by the server when the date is saved."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from catalog.models import Image
from tests.browser.conftest import login
from tests.catalog.factories import os_image

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_typing_in_the_replacement_field_suggests_matching_images_and_saves_the_chosen_one(
    page: Page, js_errors: list[str], live_server: Any, release_manager: User
) -> None:
    image = os_image("debian_bookworm")
    for n in range(40):
        os_image(f"debian_v{n:02d}")
    os_image("ubuntu_noble")
    login(page, live_server, release_manager)
    page.goto(f"{live_server.url}{image.get_absolute_url()}")
    page.locator("#deprecation summary", has_text="Set or move the date").click()
    field = page.get_by_test_id("replacement")

    field.press_sequentially("nobl")

    options = page.locator("#replacement-options option")
    expect(options).to_have_count(1)
    expect(options).to_have_attribute("value", "ubuntu_noble")
    field.fill("ubuntu_noble")
    page.locator("#deprecation input[name=date]").fill("2030-06-30")
    page.locator("#deprecation input[name=reason]").fill("moving to Ubuntu")
    page.get_by_test_id("deprecation-save").click()

    expect(page.locator("#deprecation dd a", has_text="Ubuntu Noble")).to_be_visible()
    assert Image.objects.get(label="debian_bookworm").replacement == Image.objects.get(
        label="ubuntu_noble"
    )
    assert js_errors == []
