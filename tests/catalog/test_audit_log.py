"""The audit log page: keyset pages (newest first) that reach every entry, keep the filters,
and cost the same queries at the end of a long log as at its start."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import audit
from catalog.models import AuditEntry
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def _entries(count: int, action: str = "recipe.step_add", image=None, start: int = 0) -> None:
    # Several entries per second, so that (created_at, id) breaks ties across page boundaries.
    AuditEntry.objects.bulk_create(
        AuditEntry(
            created_at=NOW - dt.timedelta(seconds=(start + n) // 3),
            action=action,
            image=image,
            target_repr=f"entry {start + n:05d}",
        )
        for n in range(count)
    )


def _in_log_order(**filters: object) -> list[str]:
    reprs = AuditEntry.objects.filter(**filters).values_list("target_repr", flat=True)
    return [r.split(" ")[1] for r in reprs.order_by("-created_at", "-id")]


def _walk(client: Client, url: str, rel: str = "next") -> tuple[list[str], list[int], str]:
    seen: list[str] = []
    queries: list[int] = []
    last_url = url
    next_url: str | None = url
    while next_url:
        last_url = next_url
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(next_url)
        assert response.status_code == 200
        queries.append(len(ctx.captured_queries))
        body = response.content.decode()
        seen += re.findall(r"entry (\d{5})", body)
        link = re.search(rf'<a href="([^"]+)" rel="{rel}"', body)
        next_url = "/audit/" + link.group(1).replace("&amp;", "&") if link else None
    return seen, queries, last_url


def test_every_entry_is_reached_once_in_order_and_back_again(client: Client, viewer) -> None:
    _entries(audit.PAGE_SIZE * 3 + 10)
    client.force_login(viewer)
    seen, _, last = _walk(client, "/audit/")
    assert seen == _in_log_order()  # newest first
    assert len(seen) == audit.PAGE_SIZE * 3 + 10
    back, _, _ = _walk(client, last, rel="prev")
    assert len(back) == audit.PAGE_SIZE * 3 + 10
    assert back[-audit.PAGE_SIZE :] == seen[: audit.PAGE_SIZE]


def test_the_filters_are_kept_from_page_to_page(client: Client, viewer) -> None:
    image = os_image("ubuntu_focal")
    _entries(audit.PAGE_SIZE + 5, action="eol.import", image=image)
    _entries(audit.PAGE_SIZE, action="recipe.step_add", image=image, start=1000)
    _entries(audit.PAGE_SIZE, action="eol.import", start=2000)
    client.force_login(viewer)
    seen, queries, _ = _walk(client, "/audit/?action=eol.&image=ubuntu_focal")
    assert seen == _in_log_order(action="eol.import", image=image)
    assert len(seen) == audit.PAGE_SIZE + 5
    assert len(queries) == 2


def test_the_last_page_costs_the_queries_of_the_first_whatever_the_length_of_the_log(
    client: Client, viewer
) -> None:
    client.force_login(viewer)
    _entries(audit.PAGE_SIZE * 2 + 1)
    _, short, _ = _walk(client, "/audit/")
    _entries(audit.PAGE_SIZE * 6, start=audit.PAGE_SIZE * 2 + 1)
    _, long, _ = _walk(client, "/audit/")
    assert len(long) == 9
    assert max(long) == max(short) <= 15
    assert len(set(long[1:])) == 1  # every page after the first alike, the last included


def test_an_unknown_cursor_gives_the_newest_page(client: Client, viewer) -> None:
    _entries(3)
    client.force_login(viewer)
    for query in ("?before=999999", "?before=drop", "?after=-1"):
        body = client.get("/audit/" + query).content.decode()
        assert re.findall(r"entry (\d{5})", body) == _in_log_order()
