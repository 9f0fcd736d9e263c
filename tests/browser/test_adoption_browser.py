"""Adopting a seeded localcloud Marketplace from the browser, twice: an administrator confirms,
the versions appear as adopted (not built here) with no way to test or release them, a label
with no image is mapped by a catalogue manager, and the second adoption changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from catalog.models import AuditEntry, ImageVersion, LocalImage
from tests.browser.conftest import login, make_image
from tests.cloud.localcloud import Cloud

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OP = "/localcloud/v1/marketplace"


def seed(cloud: Cloud, label: str, versions: dict[str, list[tuple[str, str]]]) -> None:
    """A Marketplace image with versions of (zone, storage type) local images, through
    localcloud's operator API, in publication order."""

    def call(method: str, path: str, body: dict) -> dict:
        response = requests.request(method, f"{cloud.url}{OP}{path}", json=body, timeout=10)
        assert response.status_code < 400, response.text
        return response.json()

    call("PUT", f"/images/{label}", {"name": label.title(), "categories": ["distribution"]})
    for name, locals_ in versions.items():
        version = call("POST", f"/images/{label}/versions", {"name": name})
        items = [
            {
                "instance_image_id": str(uuid.uuid4()),
                "zone": zone,
                "arch": "x86_64",
                "type": storage,
                "compatible_commercial_types": ["DEV1-S"],
            }
            for zone, storage in locals_
        ]
        call("POST", f"/versions/{version['id']}/local-images", {"local_images": items})


def adopt(page: Page, live_server: Any) -> None:
    page.goto(f"{live_server.url}/lifecycle/adoption/")
    page.get_by_test_id("adopt").click()
    expect(page.get_by_role("heading", name="Adopt the Marketplace?")).to_be_visible()
    page.get_by_test_id("confirm").click()
    page.wait_for_url(f"{live_server.url}/lifecycle/adoption/")


def test_an_administrator_adopts_the_marketplace_twice_and_a_manager_maps_a_label(
    page: Page,
    js_errors: list[str],
    live_server: Any,
    cloud: Cloud,
    admin_user: User,
    manager: User,
    zones: list,
) -> None:
    make_image("ubuntu_focal", "Ubuntu 20.04 Focal Fossa", eol_in_days=-200)
    make_image("ubuntu_jammy", "Ubuntu 22.04 Jammy Jellyfish", eol_in_days=900)
    seed(
        cloud,
        "ubuntu_focal",
        {
            "2024-01-05": [("fr-par-1", "instance_local")],
            "2024-06-20": [("fr-par-1", "instance_local"), ("fr-par-1", "instance_sbs")],
        },
    )
    seed(cloud, "ubuntu_jammy_old", {"2023-04-01": [("fr-par-1", "instance_local")]})

    login(page, live_server, admin_user)
    adopt(page, live_server)
    expect(page.locator(".msg.success")).to_contain_text("adopted 2 version(s), 3 local image(s)")
    expect(page.locator("[data-testid=adopted-row][data-label=ubuntu_focal]")).to_contain_text("2")
    expect(page.locator("[data-testid=label-row][data-label=ubuntu_jammy_old]")).to_contain_text(
        "Waiting for a manager"
    )

    # The adopted current version says what it is and offers no test or release.
    page.goto(f"{live_server.url}/images/ubuntu_focal/versions/x86_64/2024-06-20/")
    expect(page.get_by_test_id("adopted")).to_have_text("Adopted (not built here)")
    expect(page.get_by_test_id("matrix-adopted")).to_contain_text("cannot be tested")
    expect(page.get_by_test_id("rerun-zone")).to_have_count(0)
    expect(page.get_by_test_id("readiness")).to_contain_text("Current release")
    expect(page.get_by_test_id("release-adopted")).to_contain_text("not built here")

    counts = (ImageVersion.objects.count(), LocalImage.objects.count())
    entries = AuditEntry.objects.count()
    adopt(page, live_server)
    expect(page.locator(".msg.info")).to_contain_text("nothing new to adopt")
    assert (ImageVersion.objects.count(), LocalImage.objects.count()) == counts
    assert AuditEntry.objects.count() == entries

    # A catalogue manager maps the label with no image; its version is adopted at once.
    page.context.clear_cookies()
    login(page, live_server, manager)
    page.goto(f"{live_server.url}/lifecycle/adoption/")
    expect(page.get_by_test_id("adopt")).to_have_count(0)
    row = page.locator("[data-testid=label-row][data-label=ubuntu_jammy_old]")
    row.get_by_test_id("map-image").fill("ubuntu_jammy")
    row.get_by_test_id("map").click()
    expect(page.locator(".msg.success").first).to_contain_text("mapped to ubuntu_jammy")
    expect(row.get_by_test_id("label-decision")).to_contain_text("Mapped to an image")
    expect(page.locator("[data-testid=adopted-row][data-label=ubuntu_jammy]")).to_be_visible()
    assert ImageVersion.objects.filter(image__label="ubuntu_jammy", name="2023-04-01").exists()
    assert js_errors == []
