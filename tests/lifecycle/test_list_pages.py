"""The notices that need a decision, the customers and the image requests: every row
reachable page by page, at a number of queries that does not grow with the rows."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.choices import ImageKind
from lifecycle.models import Customer, ImageRequest, Notice, NoticeState, Requester
from lifecycle.views import customers as customer_views
from lifecycle.views import notices as notice_views
from lifecycle.views import requests as request_views
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def _customers(first: int, last: int) -> list[Customer]:
    return Customer.objects.bulk_create(
        Customer(
            project_id=f"00000000-0000-0000-0000-{n:012d}",
            name=f"Customer {n:05d}",
            email=f"c{n}@example.com",
        )
        for n in range(first, last)
    )


def _notices(image, customers: list[Customer], state: str) -> None:
    Notice.objects.bulk_create(
        Notice(
            customer=customer,
            image=image,
            kind="90",
            deprecation_date=dt.date(2027, 3, 1),
            due_at=timezone.now(),
            state=state,
            last_error="550 refused" if state == NoticeState.FAILED else "",
        )
        for customer in customers
    )


def _walk(client: Client, url: str, pattern: str) -> tuple[list[str], list[int]]:
    """Every row id matched by `pattern` on every page from `url` on, and each page's queries."""
    found: list[str] = []
    queries: list[int] = []
    next_url: str | None = url
    while next_url:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(next_url)
        assert response.status_code == 200
        queries.append(len(ctx.captured_queries))
        body = response.content.decode()
        found += re.findall(pattern, body)
        link = re.search(r'<a href="([^"]+)"[^>]* rel="next"', body)
        href = link.group(1).replace("&amp;", "&") if link else None
        next_url = href if not href or href.startswith("/") else url.split("?")[0] + href
    return found, queries


def test_every_notice_needing_a_decision_is_reachable_at_a_constant_query_count(
    client: Client, release_manager
) -> None:
    image = os_image("ubuntu_focal")
    _notices(image, _customers(0, 30), NoticeState.UNCERTAIN)
    client.force_login(release_manager)
    _, few = _walk(client, "/lifecycle/notices/", r'data-testid="notice-(\d+)"')

    _notices(image, _customers(30, 30 + notice_views.PAGE_SIZE * 2), NoticeState.FAILED)
    _notices(image, _customers(500, 520), NoticeState.SENT)  # nothing to decide
    found, many = _walk(client, "/lifecycle/notices/", r'data-testid="notice-(\d+)"')

    expected = Notice.objects.filter(state__in=[NoticeState.UNCERTAIN, NoticeState.FAILED])
    assert len(found) == len(set(found)) == expected.count() == 30 + notice_views.PAGE_SIZE * 2
    assert len(many) == 3
    assert max(many) <= max(few) <= 15


def test_a_decision_taken_on_a_later_page_comes_back_to_that_page(
    client: Client, release_manager
) -> None:
    image = os_image("ubuntu_focal")
    _notices(image, _customers(0, notice_views.PAGE_SIZE + 5), NoticeState.UNCERTAIN)
    client.force_login(release_manager)
    body = client.get("/lifecycle/notices/?page=2").content.decode()
    assert 'name="next" value="/lifecycle/notices/?page=2"' in body


def test_every_customer_is_reachable_at_a_constant_query_count(
    client: Client, release_manager
) -> None:
    _customers(0, 20)
    client.force_login(release_manager)
    _, few = _walk(client, "/lifecycle/customers/", r"<td>(c\d+@example\.com)</td>")

    _customers(20, customer_views.PAGE_SIZE * 5 + 1)
    found, many = _walk(client, "/lifecycle/customers/", r"<td>(c\d+@example\.com)</td>")

    assert len(found) == len(set(found)) == customer_views.PAGE_SIZE * 5 + 1
    assert len(many) == 6
    assert max(many) <= max(few) <= 15


def _requests(first: int, last: int) -> None:
    for n in range(first, last):
        item = ImageRequest.objects.create(kind=ImageKind.OS, name=f"Distro {n:04d}")
        Requester.objects.create(
            request=item, email=f"r{n}@example.com", confirmed_at=timezone.now()
        )


def test_every_image_request_is_reachable_with_its_sort_at_a_constant_query_count(
    client: Client, viewer
) -> None:
    _requests(0, 5)
    client.force_login(viewer)
    _, few = _walk(client, "/lifecycle/requests/?sort=name", r'data-testid="request-(\d+)"')

    _requests(5, request_views.PAGE_SIZE * 2 + 3)
    found, many = _walk(client, "/lifecycle/requests/?sort=name", r'data-testid="request-(\d+)"')

    names = ImageRequest.objects.order_by("normalized_name").values_list("pk", flat=True)
    assert [int(pk) for pk in found] == list(names)
    assert len(many) == 3
    assert max(many) <= max(few) <= 15


def test_the_image_notices_panel_counts_every_notice_and_pages_its_customers(
    client: Client, release_manager
) -> None:
    image = os_image("ubuntu_focal")
    url = f"/lifecycle/notices/image/{image.label}/panel/"
    _notices(image, _customers(0, 3), NoticeState.SENT)
    client.force_login(release_manager)
    _, few = _walk(client, url, r"<td>Customer (\d{5}) ")

    _notices(image, _customers(3, notice_views.PANEL_CUSTOMERS * 2 + 10), NoticeState.SENT)
    _notices(image, _customers(1000, 1005), NoticeState.FAILED)
    found, many = _walk(client, url, r"<td>Customer (\d{5}) ")

    total = notice_views.PANEL_CUSTOMERS * 2 + 10 + 5
    assert len(found) == len(set(found)) == total
    assert found == sorted(found)
    assert len(many) == 3
    assert max(many) <= max(few) <= 12
    body = client.get(url).content.decode()
    assert f"{total - 5} sent" in body and "5 failed" in body


@pytest.mark.skipif(connection.vendor != "sqlite", reason="reads SQLite's query plan")
def test_the_customer_order_and_an_images_notices_are_read_from_indexes() -> None:
    image = os_image("ubuntu_focal")
    page = Customer.objects.order_by("name", "id")[500:600]
    counts = Notice.objects.filter(image=image).values("state").annotate(n=Count("id"))
    with connection.cursor() as cursor:
        for queryset, index in ((page, "customer_name_order"), (counts, "notice_image_state")):
            sql, params = queryset.query.sql_with_params()
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert index in plan and "TEMP B-TREE FOR ORDER BY" not in plan
