"""The build list and the image page's builds panel: a version's link (which names its image)
costs no query of its own, so the queries do not grow with the rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from builds.models import Build
from catalog.models import ImageVersion
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def _builds_with_versions(count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        image = os_image(f"distro_{n:03d}")
        version = ImageVersion.objects.create(
            image=image, name="2026-11-01", manifest=[{"name": "bash", "version": "5.2"}]
        )
        Build.objects.create(image=image, state="succeeded", version=version)


def _queries(client: Client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_build_list_costs_the_same_queries_for_few_or_a_full_page_of_builds(
    client: Client, viewer
) -> None:
    client.force_login(viewer)
    _builds_with_versions(2)
    few, _ = _queries(client, reverse("builds:list"))
    _builds_with_versions(60, start=2)
    many, body = _queries(client, reverse("builds:list"))
    assert many == few <= 15
    assert body.count("/2026-11-01/") == 50  # a page of version links


def test_the_image_builds_panel_costs_the_same_queries_for_one_or_ten_builds(
    client: Client, viewer
) -> None:
    client.force_login(viewer)
    image = os_image("debian_bookworm")

    def add(count: int) -> None:
        for _ in range(count):
            version = ImageVersion.objects.create(
                image=image, name=ImageVersion.next_name(image, "x86_64")
            )
            Build.objects.create(image=image, state="succeeded", version=version)

    url = reverse("builds:for_image", args=[image.label])
    add(1)
    few, _ = _queries(client, url)
    add(12)
    many, body = _queries(client, url)
    assert many == few <= 10
    assert body.count("/debian_bookworm/") >= 10
