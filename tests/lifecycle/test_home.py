"""The home page: what needs a person today, its counts in the navigation, the EOL proposals'
accept and reject actions, and a query count that does not grow with the catalogue."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalog import eol
from catalog.choices import DateSource
from catalog.models import AuditEntry, Category, Image, ImageVersion, UpstreamLifecycle
from lifecycle import home
from tests.catalog.factories import os_image
from tests.lifecycle.home_data import seed_every_kind

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_with_nothing_to_do_the_home_page_says_so(viewer) -> None:
    os_image("debian_bookworm")  # an image with no version is neither stale nor failed
    response = _client(viewer).get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="home-empty"' in html
    assert "Nothing needs you today" in html
    assert home.total() == 0
    assert 'data-testid="nav-home">Today</a>' in html  # no count shown


def test_the_home_page_lists_every_kind_with_a_link_to_where_it_is_acted_on(viewer) -> None:
    seeded = seed_every_kind()
    client = _client(viewer)
    response = client.get("/")
    html = response.content.decode()
    counted = home.counts()
    counted.pop("exposures", None)  # the advisories app's section: its own test
    assert counted.pop("parity") == 0  # no check has run: tests/lifecycle/test_parity.py
    assert counted == {
        "builds": 1,
        "tests": 1,
        "stale": 1,
        "deprecations": 1,
        "eol": 1,
        "serials": 1,
        "requests": 1,
        "zones": 1,
    }
    assert 'data-testid="home-empty"' not in html
    # failed build, with the stage and its reason, linked to the build
    assert reverse("builds:detail", args=[seeded.failed_build.pk]) in html
    assert "unable to locate package" in html
    # failed test run with the failing check (not the passing one), linked to its log
    failing = seeded.failed_run.results.get(check_name="dns")
    assert reverse("builds:check_log", args=[failing.pk]) in html
    passing = seeded.failed_run.results.get(check_name="ssh")
    assert reverse("builds:check_log", args=[passing.pk]) not in html
    # stale image, deprecation with each notice state counted
    assert seeded.stale.get_absolute_url() in html
    assert seeded.deprecated.get_absolute_url() + "#deprecation" in html
    section = html.split('data-testid="home-deprecations"')[1].split("</section>")[0]
    assert "planned 0" in section and "sent 1" in section
    assert "failed 1" in section and "uncertain 0" in section
    # EOL proposal with both dates; serial seen upstream; janitor finding; request by count
    assert "2029-04-25" in html and "2029-05-31" in html
    assert "20260201-2" in html and "20260101-1" in html
    assert "11111111-2222" in html and "its test run ended" in html
    assert reverse("lifecycle:request_detail", args=[seeded.request.pk]) in html
    # the navigation's count is every item, the janitor's finding included
    section = html.split('data-testid="home-zones"')[1].split("</section>")[0]
    assert "debian_gap 2026-01-06" in section and "fr-par-1" in section
    assert home.total() == 9
    assert '<span class="badge count" data-testid="home-count" title="9 items need you">9' in html
    # every other page loads the count after it is shown, in its own request
    other = client.get("/images/").content.decode()
    assert 'hx-get="/today/count/" hx-trigger="load"' in other
    count = client.get("/today/count/")
    assert "9 items need you" in count.content.decode()
    assert "max-age=60" in count["Cache-Control"] and "private" in count["Cache-Control"]


def test_a_viewer_sees_no_eol_actions_and_cannot_post_them(viewer) -> None:
    seeded = seed_every_kind()
    client = _client(viewer)
    html = client.get("/").content.decode()
    accept = reverse("eol_proposal", args=[seeded.eol.image.label, "accept"])
    assert accept not in html
    assert client.post(accept).status_code == 403
    seeded.eol.refresh_from_db()
    assert seeded.eol.proposed_security_support_end == dt.date(2029, 4, 25)


def test_a_manager_accepts_an_earlier_eol_with_an_audit_entry(manager) -> None:
    seeded = seed_every_kind()
    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    page = client.get("/")
    accept = reverse("eol_proposal", args=[seeded.eol.image.label, "accept"])
    assert accept in page.content.decode()
    assert client.post(accept).status_code == 403  # no CSRF token
    token = page.cookies["csrftoken"].value
    response = client.post(accept, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/#home-eol"
    row = UpstreamLifecycle.objects.get(pk=seeded.eol.pk)
    assert row.security_support_end == dt.date(2029, 4, 25)
    assert row.security_support_end_source == DateSource.ENDOFLIFE_DATE
    assert row.proposed_security_support_end is None
    entry = AuditEntry.objects.get(action="eol.proposal_accepted")
    assert entry.actor == manager and entry.image == row.image
    assert home.counts()["eol"] == 0


def test_a_rejected_eol_is_kept_and_not_proposed_again(manager) -> None:
    seeded = seed_every_kind()
    client = _client(manager)
    reject = reverse("eol_proposal", args=[seeded.eol.image.label, "reject"])
    assert client.post(reject).status_code == 302
    row = UpstreamLifecycle.objects.get(pk=seeded.eol.pk)
    assert row.security_support_end == dt.date(2029, 5, 31)
    assert row.proposed_security_support_end is None
    assert row.rejected_security_support_end == dt.date(2029, 4, 25)
    assert AuditEntry.objects.filter(action="eol.proposal_rejected", actor=manager).count() == 1
    # deciding twice says so and changes nothing
    assert client.post(reject).status_code == 302
    assert AuditEntry.objects.filter(action="eol.proposal_rejected").count() == 1


def test_the_import_stores_an_eol_that_moves_backwards_as_a_proposal() -> None:
    image = os_image("ubuntu_noble", eol=dt.date(2029, 5, 31))
    row = image.upstream
    row.eol_product, row.eol_cycle = "ubuntu", "24.04"
    row.security_support_end_source = DateSource.ENDOFLIFE_DATE
    row.save()
    cycles = {"24.04": eol.CycleDates(cycle="24.04", security_support_end=dt.date(2029, 4, 25))}
    change = eol.apply_cycle(row.pk, "ubuntu", cycles, now=timezone.now())
    assert change is not None and change.warnings
    row.refresh_from_db()
    assert row.security_support_end == dt.date(2029, 5, 31)
    assert row.proposed_security_support_end == dt.date(2029, 4, 25)
    assert row.proposed_at is not None
    # rejected: the same date is not proposed again by the next import
    eol.reject_proposal(row.pk, actor=None)
    eol.apply_cycle(row.pk, "ubuntu", cycles, now=timezone.now())
    row.refresh_from_db()
    assert row.proposed_security_support_end is None
    # upstream moves back to the stored date: nothing is waiting
    row.proposed_security_support_end = dt.date(2029, 1, 1)
    row.save()
    cycles = {"24.04": eol.CycleDates(cycle="24.04", security_support_end=dt.date(2029, 5, 31))}
    eol.apply_cycle(row.pk, "ubuntu", cycles, now=timezone.now())
    row.refresh_from_db()
    assert row.proposed_security_support_end is None and row.proposed_at is None


def test_a_section_added_by_another_app_is_counted_and_shown(viewer, monkeypatch) -> None:
    os_image("debian_bookworm")
    monkeypatch.setattr(home, "_extras", [])
    home.add_section(
        home.Extra(
            key="extra",
            title="Something else",
            queryset=lambda today: Image.objects.filter(label="debian_bookworm"),
            rows=lambda qs: [image.label for image in qs],
            template="lifecycle/home.html#missing",
        )
    )
    assert home.counts()["extra"] == 1
    assert [s.rows for s in home.build().sections if s.key == "extra"] == [["debian_bookworm"]]


def _queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/").status_code == 200
    return len(ctx.captured_queries)


def test_the_home_page_costs_the_same_queries_at_10_and_at_1000_images(viewer) -> None:
    client = _client(viewer)
    seed_every_kind("a_")
    for n in range(10):
        os_image(f"small_{n:04d}")
    small = _queries(client)
    # More of each kind than the page shows, and 1,000 images in all, most of them stale.
    for n in range(55):
        seed_every_kind(f"z{n:03d}_")
    category = Category.objects.get()
    images = Image.objects.bulk_create(
        Image(label=f"bulk_{n:04d}", name=f"Bulk {n}", category=category, architectures=["x86_64"])
        for n in range(1000 - Image.objects.count())
    )
    old = timezone.now() - dt.timedelta(days=400)
    ImageVersion.objects.bulk_create(
        ImageVersion(image=image, name="2025-01-01", created_at=old, released_at=old)
        for image in images
    )
    assert Image.objects.count() == 1000
    large = _queries(client)
    assert home.counts()["stale"] == 56 + len(images)
    assert small == large
    assert large <= 20
