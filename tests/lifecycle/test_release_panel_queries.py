"""The release panel reads its image once, with the version: the current release's link and
the release notes' previous version reuse it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.catalog.factories import os_image
from tests.lifecycle.test_feed import logged_in, released

pytestmark = pytest.mark.django_db


def test_the_release_panel_reads_no_image_row_of_its_own(viewer) -> None:
    image = os_image("debian_bookworm")
    earlier = released(image, "2026-05-01", 180)
    released(image, "2026-08-01", 90)
    current = released(image, "2026-11-01", 1)
    client = logged_in(viewer)
    for version in (earlier, current):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(
                reverse("lifecycle:release_panel", args=[version.pk]), HTTP_HX_REQUEST="true"
            )
        assert response.status_code == 200
        # The link to the current release (from the earlier version) and to the previous one.
        assert current.get_absolute_url() in response.content.decode() or version == current
        alone = [
            q["sql"] for q in ctx.captured_queries if q["sql"].startswith('SELECT "catalog_image"')
        ]
        assert alone == []
