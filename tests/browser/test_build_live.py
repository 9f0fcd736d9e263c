"""A manager clicks Rebuild and follows the build live to its new version and package diff.

The build runs for real (fetch from a local upstream, libguestfs, qemu-img); the worker is
the build task called in a thread of this process, because the live server's test database
lives in this process's memory.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from builds import tasks
from builds.models import Build
from catalog.models import ImageVersion, Zone
from tests.browser.conftest import login
from tests.builds.upstream_server import UpstreamServer, local_demo_image

pytestmark = [pytest.mark.browser, pytest.mark.guestfs, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_image(settings: Any, tmp_path, upstream: UpstreamServer, debian_qcow2, cloud):
    Zone.objects.create(code="fr-par-1", enabled=True)
    settings.PUBLISH_IMPORT_TIMEOUT_SECONDS = 300
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    image = local_demo_image(upstream, debian_qcow2, "20261126-7", "hello from the factory\n")
    # An earlier version, so that the new one has a package diff to show.
    ImageVersion.objects.create(
        image=image,
        name="2026-08-01",
        manifest=[
            {"name": "openssh-server", "version": "1:9.2p1-2", "arch": "amd64"},
            {"name": "gone-package", "version": "1.0", "arch": "all"},
        ],
    )
    return image


def test_a_manager_rebuilds_and_follows_the_build_to_its_new_version(
    page: Page, live_server: Any, manager: User, demo_image
) -> None:
    login(page, live_server, manager)
    page.goto(f"{live_server.url}{demo_image.get_absolute_url()}")
    page.evaluate("window.notReloaded = true")
    page.get_by_test_id("rebuild").click()
    expect(page.get_by_test_id("queued")).to_contain_text("Queued")
    assert page.evaluate("window.notReloaded") is True, "Rebuild reloaded the page"
    build = Build.objects.get(image=demo_image)

    worker = threading.Thread(target=tasks.run_build, args=(build.pk,), daemon=True)
    worker.start()
    page.get_by_test_id("queued").get_by_role("link").click()
    expect(page.get_by_test_id("log")).to_contain_text("Resolving channel", timeout=60_000)
    expect(page.get_by_test_id("log")).to_contain_text("[customize]", timeout=120_000)
    expect(page.get_by_test_id("build-state")).to_have_text("Done", timeout=600_000)
    worker.join(timeout=30)
    expect(page.locator("tr[data-stage=fetch] .progress")).to_be_visible()
    expect(page.get_by_test_id("log")).to_contain_text("Version")
    # One row per storage type of the image in each zone, each available.
    for storage in ("instance_local", "instance_sbs"):
        row = page.get_by_test_id("zones").locator(
            f"tr[data-zone=fr-par-1][data-storage={storage}]"
        )
        expect(row).to_contain_text("Available")

    page.get_by_test_id("version").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/versions/x86_64/\d{4}-\d\d-\d\d/"))
    expect(page.get_by_test_id("serial")).to_have_text("20261126-7")
    diff = page.get_by_test_id("package-diff")
    expect(diff).to_contain_text("2026-08-01")
    expect(diff.locator("tr.diff-removed")).to_contain_text("gone-package")
    expect(diff.locator("tr.diff-changed")).to_contain_text("openssh-server")
    page.goto(f"{live_server.url}{demo_image.get_absolute_url()}")
    expect(page.get_by_test_id("image-builds")).to_contain_text("Done")
