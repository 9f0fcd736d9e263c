"""The home page's section of the advisories app: fixable exposures of released versions."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from advisories.models import Advisory, Exposure
from catalog.choices import VersionState
from catalog.models import ImageVersion
from lifecycle import home
from lifecycle.models import Release
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def _exposure(version: ImageVersion, osv_id: str, fixed: str) -> Exposure:
    advisory = Advisory.objects.create(
        osv_id=osv_id, ecosystem="Debian:12", package="openssl", modified=timezone.now()
    )
    return Exposure.objects.create(
        version=version,
        advisory=advisory,
        package="libssl3",
        installed_version="3.0.11-1",
        fixed_version=fixed,
        severity="high",
    )


def test_fixable_exposures_of_released_versions_show_on_the_home_page(viewer) -> None:
    image = os_image("debian_bookworm")
    released = ImageVersion.objects.create(
        image=image, name="2026-01-01", state=VersionState.RELEASED, released_at=timezone.now()
    )
    Release.objects.create(version=released)
    withdrawn = ImageVersion.objects.create(
        image=image, name="2025-12-01", state=VersionState.RELEASED, released_at=timezone.now()
    )
    Release.objects.create(version=withdrawn, withdrawn_at=timezone.now())
    _exposure(released, "DSA-1-1", "3.0.13-1")
    _exposure(released, "DSA-2-1", "")  # no fix yet: a rebuild would not help
    _exposure(withdrawn, "DSA-3-1", "3.0.13-1")  # no longer offered

    assert home.counts()["exposures"] == 1
    client = Client()
    client.force_login(viewer)
    html = client.get("/").content.decode()
    section = html.split('data-testid="home-exposures"')[1].split("</section>")[0]
    assert "DSA-1-1" in section and released.get_absolute_url() in section
    assert "DSA-2-1" not in section and "DSA-3-1" not in section
