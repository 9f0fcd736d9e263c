"""The image page tells a manager what a first build costs before they click Rebuild."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import ImageVersion
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def test_an_image_never_built_says_what_the_first_build_takes(client, manager) -> None:
    image = os_image("never_built")
    client.force_login(manager)

    page = client.get(image.get_absolute_url()).content.decode()

    assert 'data-testid="first-build-hint"' in page
    assert "about 15 minutes" in page and "emulated appliance" in page


def test_the_hint_goes_once_the_image_has_a_version(client, manager) -> None:
    image = os_image("built_once")
    ImageVersion.objects.create(image=image, arch="x86_64", name="2026-12-01")
    client.force_login(manager)

    page = client.get(image.get_absolute_url()).content.decode()

    assert 'data-testid="rebuild"' in page
    assert 'data-testid="first-build-hint"' not in page


def test_a_viewer_sees_no_rebuild_button_and_no_hint(client, viewer) -> None:
    client.force_login(viewer)

    page = client.get(os_image("viewed").get_absolute_url()).content.decode()

    assert 'data-testid="rebuild"' not in page
    assert 'data-testid="first-build-hint"' not in page


def test_the_page_reads_no_manifest_and_its_queries_do_not_grow_with_the_versions(
    client, manager
) -> None:
    image = os_image("debian_bookworm")
    client.force_login(manager)

    def add(first: int, last: int) -> None:
        for n in range(first, last):
            ImageVersion.objects.create(
                image=image, name=f"2026-01-{n + 1:02d}", manifest=[{"name": "bash"}]
            )

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(image.get_absolute_url()).status_code == 200
        return [q["sql"] for q in ctx.captured_queries]

    add(0, 2)
    few = queries()
    add(2, 25)
    many = queries()
    # 16: the timeline reads its versions' dates (releases, refresh clock) in one query.
    assert len(many) == len(few) <= 16
    assert not any('"manifest"' in sql for sql in many)
