"""Dates the product accepts: a bounded range for upstream dates set by hand, day arithmetic
that never overflows, and the migration that clamped out-of-range dates already stored."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
import time_machine
from django.apps import apps
from django.urls import reverse

from catalog import dates
from catalog.choices import DateSource
from catalog.models import AuditEntry, Image, UpstreamLifecycle
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
clamp_migration = importlib.import_module(
    "catalog.migrations.0003_image_lifecycle_error_date_bounds"
)


@time_machine.travel(NOON, tick=False)
def test_a_manager_cannot_set_an_upstream_date_out_of_range(client, manager) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2026, 6, 30))
    client.force_login(manager)
    url = reverse("catalog:set_date", args=[image.label])

    response = client.post(
        url,
        {"field": "security_support_end", "value": "9999-12-31", "reason": "never ends"},
        follow=True,
    )

    text = response.content.decode()
    assert "The date was not changed" in text
    assert "9999-12-31 is out of range: choose a date between 1990-01-01 and 2100-12-31" in text
    assert 'min="1990-01-01"' in text and 'max="2100-12-31"' in text
    image.upstream.refresh_from_db()
    assert image.upstream.security_support_end == dt.date(2026, 6, 30)
    assert image.upstream.security_support_end_source == "demo"
    # The bounds themselves are accepted.
    client.post(url, {"field": "security_support_end", "value": "2100-12-31", "reason": "LTS"})
    image.upstream.refresh_from_db()
    assert image.upstream.security_support_end == dates.LATEST


def test_adding_days_to_the_last_date_python_knows_clamps_instead_of_overflowing() -> None:
    assert dates.add_days(dt.date.max, 90) == dt.date.max
    assert dates.add_days(dt.date.min, -90) == dt.date.min
    assert dates.add_days(dt.date(2026, 7, 11), 10**10) == dt.date.max
    assert dates.add_days(dt.date(2026, 7, 11), 90) == dt.date(2026, 10, 9)


def test_the_migration_clamps_out_of_range_dates_already_stored_with_an_audit_entry() -> None:
    forever = os_image("debian_forever", eol=dt.date(9999, 12, 31))
    UpstreamLifecycle.objects.filter(image=forever).update(
        release_date=dt.date(1, 1, 1), extended_support_end=dt.date(2030, 1, 1)
    )
    Image.objects.filter(pk=forever.pk).update(deprecation_date=dt.date(9999, 12, 31))
    fine = os_image("debian_bookworm", eol=dt.date(2028, 6, 30))

    clamp_migration.clamp_stored_dates(apps, None)

    row = UpstreamLifecycle.objects.get(image=forever)
    assert row.security_support_end == dt.date(2100, 12, 31)
    assert row.release_date == dt.date(1990, 1, 1)
    assert row.extended_support_end == dt.date(2030, 1, 1)
    assert row.security_support_end_source == DateSource.DEMO  # still whoever set it
    assert Image.objects.get(pk=forever.pk).deprecation_date == dt.date(2100, 12, 31)
    assert UpstreamLifecycle.objects.get(image=fine).security_support_end == dt.date(2028, 6, 30)
    entries = AuditEntry.objects.filter(action="dates.clamped").order_by("target_type")
    assert [(e.target_type, e.image_id, e.before, e.after) for e in entries] == [
        (
            "catalog.Image",
            forever.pk,
            {"deprecation_date": "9999-12-31"},
            {"deprecation_date": "2100-12-31"},
        ),
        (
            "catalog.UpstreamLifecycle",
            forever.pk,
            {"release_date": "0001-01-01", "security_support_end": "9999-12-31"},
            {"release_date": "1990-01-01", "security_support_end": "2100-12-31"},
        ),
    ]
    assert all(entry.actor_name == "system" and "clamped" in entry.message for entry in entries)
