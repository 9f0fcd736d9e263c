"""The admin's audit changelist joins the image it shows: no query per row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from catalog.models import AuditEntry
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def test_the_audit_changelist_costs_the_same_queries_for_few_or_a_full_page_of_entries(
    client: Client, admin_user
) -> None:
    client.force_login(admin_user)

    def add(first: int, last: int) -> None:
        for n in range(first, last):
            AuditEntry.objects.create(action="eol.import", image=os_image(f"distro_{n:03d}"))

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/admin/catalog/auditentry/")
        assert response.status_code == 200
        return len(ctx.captured_queries)

    add(0, 2)
    few = queries()
    add(2, 60)
    assert queries() == few
