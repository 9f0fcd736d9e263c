"""The catalogue's timeline and the image page's: every date from the deprecation plan, one
renderer, labels that never overprint, and queries that do not grow with the catalogue."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalog.choices import ImageState
from catalog.models import Category, Image, ImageVersion, UpstreamLifecycle
from lifecycle import deprecation, timeline
from tests.catalog.factories import instantapp, os_image

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("deprecation_policy")]

URL = reverse("lifecycle:timeline")


def ubuntu(label: str, released: dt.date, eol: dt.date) -> Image:
    image = os_image(label, eol=eol)
    image.distribution = "ubuntu"
    image.save(update_fields=["distribution"])
    UpstreamLifecycle.objects.filter(image=image).update(
        release_date=released,
        active_support_end=released + dt.timedelta(days=3 * 365),
        extended_support_end=eol + dt.timedelta(days=5 * 365),
    )
    return Image.objects.select_related("upstream").get(pk=image.pk)


def mark_date(html: str, row_label: str, title: str) -> str:
    """The date of the mark titled `title` in the image page's drawing or the table."""
    found = re.search(rf"<title>{re.escape(title)}: (\d{{4}}-\d\d-\d\d)</title>", html)
    assert found, f"no mark '{title}' for {row_label}"
    return found.group(1)


def test_focal_past_its_eol_shows_the_deprecation_panels_date(client, manager) -> None:
    """Ubuntu 20.04, past its EOL and not yet scheduled: the policy date (EOL + grace) is
    behind today, so the plan moves it to a week from today; the timeline shows that same
    date, on the image page and on the catalogue's timeline, not EOL + grace. At noon of one
    day: "today" is the same day for the test and for the pages (a run across midnight would
    give the pages the next day)."""
    noon = dt.datetime.combine(
        timezone.localdate(), dt.time(12), tzinfo=timezone.get_current_timezone()
    )
    with time_machine.travel(noon, tick=False):
        focal = ubuntu("ubuntu_focal", dt.date(2020, 4, 23), dt.date(2025, 5, 31))
        today = timezone.localdate()
        plan = deprecation.plan_for(focal, today)
        assert plan.date == today + dt.timedelta(days=7)
        client.force_login(manager)

        panel = client.get(reverse("lifecycle:deprecation_panel", args=[focal.label])).content
        assert f"{plan.date:%Y-%m-%d}" in panel.decode()
        image_page = client.get(focal.get_absolute_url()).content.decode()
        assert mark_date(image_page, focal.label, "Deprecation on this platform") == (
            f"{plan.date:%Y-%m-%d}"
        )
        assert (
            "2025-08-29" not in image_page.split('data-testid="timeline"')[1].split("</section>")[0]
        )
        page = client.get(URL).content.decode()
        assert (
            mark_date(page, focal.label, "Deprecation on this platform") == f"{plan.date:%Y-%m-%d}"
        )
        row = re.search(r'<tr data-image="ubuntu_focal">(.*?)</tr>', page, re.S)
        assert row and f'<td data-col="deprecation">{plan.date:%Y-%m-%d}</td>' in row.group(1)
        retired = plan.date + dt.timedelta(days=180)
        assert f'<td data-col="retirement">{retired:%Y-%m-%d}</td>' in row.group(1)


def test_a_row_has_bars_for_upstream_support_and_marks_for_the_platform() -> None:
    noble = ubuntu("ubuntu_noble", dt.date(2024, 4, 25), dt.date(2029, 5, 31))
    released = ImageVersion.objects.create(
        image=noble,
        name="2026-11-01",
        released_at=dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC),
        state="released",
    )
    today = dt.date(2026, 12, 1)

    row = timeline.row_for_image(noble, today)

    assert [(s.kind, s.start, s.end) for s in row.spans] == [
        ("active", dt.date(2024, 4, 25), dt.date(2027, 4, 25)),
        ("security", dt.date(2027, 4, 25), dt.date(2029, 5, 31)),
        ("extended", dt.date(2029, 5, 31), dt.date(2034, 5, 30)),
    ]
    kinds = {m.kind: m.date for m in row.marks}
    assert kinds["release"] == dt.date(2026, 11, 2)
    assert kinds["refresh"] == dt.date(2026, 11, 2) + dt.timedelta(days=90)
    assert kinds["deprecation"] == deprecation.plan_for(noble, today).date
    assert kinds["deprecation"] == dt.date(2029, 5, 31) + dt.timedelta(days=90)
    assert kinds["retirement"] == kinds["deprecation"] + dt.timedelta(days=180)
    assert released.name in row.releases[0][1]


def test_a_deprecated_image_retires_after_the_retention_from_its_deprecation() -> None:
    image = ubuntu("ubuntu_bionic", dt.date(2018, 4, 26), dt.date(2023, 5, 31))
    Image.objects.filter(pk=image.pk).update(
        state=ImageState.DEPRECATED,
        deprecation_date=dt.date(2023, 9, 1),
        deprecated_at=dt.datetime(2023, 9, 1, 6, tzinfo=dt.UTC),
    )
    image.refresh_from_db()

    row = timeline.row_for_image(image, dt.date(2024, 1, 1))

    assert row.deprecation == dt.date(2023, 9, 1)
    assert row.retirement == dt.date(2023, 9, 1) + dt.timedelta(days=180)
    assert row.refresh_due is None, "a deprecated image gets no refresh"


def test_close_labels_go_on_separate_lanes_and_never_overprint(client, manager) -> None:
    """The deprecation a week from today and Today are a few pixels apart on a ten-year axis:
    their labels go on different lanes."""
    focal = ubuntu("ubuntu_focal", dt.date(2020, 4, 23), dt.date(2025, 5, 31))
    svg = str(timeline.image_svg(timeline.row_for_image(focal)))
    labels = re.findall(r'<text class="tl-label [^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]+)', svg)
    assert any(t.startswith("Today") for _, _, t in labels)
    assert any(t.startswith("Deprecation on this platform") for _, _, t in labels)
    boxes = [
        (float(x) - len(t) * timeline.CHAR_WIDTH / 2, float(x) + len(t) * timeline.CHAR_WIDTH / 2,
         float(y), t)
        for x, y, t in labels
    ]  # fmt: skip
    for n, (left, right, y, text) in enumerate(boxes):
        for other_left, other_right, other_y, other in boxes[n + 1 :]:
            if y == other_y:
                assert right <= other_left or other_right <= left, f"{text!r} overprints {other!r}"


def test_the_lanes_put_a_label_on_the_first_lane_it_fits() -> None:
    assert timeline._lanes([(100, "a" * 10), (110, "b" * 10), (300, "c" * 10)]) == [0, 1, 0]


def test_the_page_groups_by_distribution_filters_and_draws_without_script(client, manager) -> None:
    ubuntu("ubuntu_noble", dt.date(2024, 4, 25), dt.date(2029, 5, 31))
    bookworm = os_image("debian_bookworm", eol=dt.date(2028, 6, 30))
    instantapp("wordpress", bookworm)
    client.force_login(manager)

    page = client.get(URL).content.decode()
    svg = page[page.index("<svg") : page.index("</svg>")]
    groups = re.findall(r'<text class="tl-group"[^>]*>([^<]+)</text>', svg)
    assert groups == ["Debian", "Ubuntu", "InstantApps"]
    assert "<script" not in svg and "style=" not in svg
    assert re.search(r'<line class="tl-today"[^>]*><title>Today: ', svg)
    assert 'role="img"' in svg and "<title>Lifecycle of the catalogue" in svg
    # The app follows its base: the same deprecation date.
    assert re.search(
        r'<tr data-image="wordpress">.*?data-col="deprecation">2028-09-28<', page, re.S
    )

    filtered = client.get(URL, {"q": "noble"}).content.decode()
    assert (
        'data-image="ubuntu_noble"' in filtered and 'data-image="debian_bookworm"' not in filtered
    )
    nothing = client.get(URL, {"q": "no-such-image"}).content.decode()
    assert 'data-testid="timeline-empty"' in nothing


def _catalogue(first: int, last: int) -> None:
    category = Category.objects.get_or_create(name="Distributions")[0]
    images = Image.objects.bulk_create(
        Image(
            kind="os" if n % 4 else "instantapp",
            label=f"img_{n:05d}",
            name=f"Image {n}",
            category=category,
            architectures=["x86_64"],
            distribution=("debian", "ubuntu", "rocky")[n % 3],
            grace_period_days=30 if n % 8 == 0 else None,
        )
        for n in range(first, last)
    )
    UpstreamLifecycle.objects.bulk_create(
        UpstreamLifecycle(
            image=image,
            release_date=dt.date(2022, 1, 1),
            security_support_end=dt.date(2026, 1, 1) + dt.timedelta(days=n * 3),
        )
        for n, image in enumerate(images)
        if image.kind == "os"
    )
    bases = [i for i in images if i.kind == "os"]
    for app in (i for i in images if i.kind == "instantapp"):
        app.base_image = bases[0]
    Image.objects.bulk_update([i for i in images if i.kind == "instantapp"], ["base_image"])
    ImageVersion.objects.bulk_create(
        ImageVersion(
            image=image,
            name=f"2026-0{v + 1}-01",
            state="released",
            released_at=dt.datetime(2026, v + 1, 2, tzinfo=dt.UTC),
        )
        for image in images
        for v in range(2)
    )


def test_the_query_count_is_the_same_at_10_and_1000_images_and_at_most_20(client, manager) -> None:
    client.force_login(manager)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(URL)
        assert response.status_code == 200
        return len(ctx.captured_queries)

    _catalogue(0, 10)
    few = queries()
    _catalogue(10, 1000)
    many = queries()
    assert many == few <= 20


def test_setting_a_date_on_the_image_page_updates_its_timeline_and_audit_log(
    client, release_manager
) -> None:
    image = os_image("debian_bookworm", eol=dt.date(2030, 6, 30))
    client.force_login(release_manager)
    url = reverse("lifecycle:deprecation_set", args=[image.label])
    new_date = timezone.localdate() + dt.timedelta(days=60)
    data = {"date": f"{new_date:%Y-%m-%d}", "reason": "Moved for the test"}

    answer = client.post(
        url,
        data,
        headers={
            "HX-Request": "true",
            "HX-Current-URL": f"http://testserver{image.get_absolute_url()}",
        },
    ).content.decode()

    oob = answer[answer.index('id="timeline" data-testid="timeline" hx-swap-oob="outerHTML"') :]
    assert f"<title>Deprecation on this platform: {new_date:%Y-%m-%d}</title>" in oob
    assert "deprecation.date_set" in answer[answer.index('<div id="image-audit" hx-swap-oob') :]

    # From the deprecation page, which has neither region, the panel alone.
    page_url = reverse("lifecycle:deprecation_panel", args=[image.label])
    alone = client.post(
        url,
        data,
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{page_url}"},
    ).content.decode()
    assert "hx-swap-oob" not in alone
