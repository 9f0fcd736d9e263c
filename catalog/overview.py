"""The catalogue overview: one row per image with its badges, filtered and sorted.

Everything a row shows comes from one query (annotations and select_related), so the page
costs the same number of queries whatever the number of images. The rows are paginated
(PAGE_SIZE a page): only the rows of the page asked for are built and rendered, and the
filters, the sort and the page number all live in the URL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog import dates, staleness
from catalog.choices import ImageKind, ImageState
from catalog.models import Image, ImageVersion

PAGE_SIZE = 50
# Every sort ends on the label (unique), so that a page boundary never splits ties unstably.
SORTS = {
    "label": ("label",),
    "name": ("name", "label"),
    "eol": (F("eol_date").asc(nulls_last=True), "label"),
    "-eol": (F("eol_date").desc(nulls_last=True), "label"),
    "age": (F("latest_version_at").asc(nulls_first=True), "label"),
    "kind": ("kind", "label"),
}
BADGES = {
    "eol_soon": "EOL within the warning window",
    "past_eol": "Past upstream EOL",
    "stale": "Stale (no release for too long)",
    "deprecated": "Deprecated or retired",
}


@dataclass
class OverviewFilters:
    """The overview's filters as read from the query string (and written back to it)."""

    q: str = ""
    kind: str = ""
    arch: str = ""
    badge: str = ""
    sort: str = "label"

    @classmethod
    def from_query(cls, data: dict) -> OverviewFilters:
        kind = data.get("kind", "")
        badge = data.get("badge", "")
        sort = data.get("sort", "label")
        return cls(
            q=data.get("q", "").strip()[:100],
            kind=kind if kind in ImageKind.values else "",
            arch=data.get("arch", "") if data.get("arch", "") in ("x86_64", "arm64") else "",
            badge=badge if badge in BADGES else "",
            sort=sort if sort in SORTS else "label",
        )


@dataclass
class Row:
    """One catalogue row with what the page shows about it."""

    image: Image
    eol_date: dt.date | None
    eol_days: int | None
    latest_version: str | None
    latest_version_age: int | None
    days_since_release: int | None
    badges: list[str] = field(default_factory=list)


def catalogue_queryset() -> QuerySet[Image]:
    latest = ImageVersion.objects.filter(image=OuterRef("pk")).order_by("-created_at", "-id")
    released = ImageVersion.objects.filter(
        image=OuterRef("pk"), released_at__isnull=False
    ).order_by("-released_at")
    return Image.objects.select_related("category", "upstream", "base_image__upstream").annotate(
        latest_version_name=Subquery(latest.values("name")[:1]),
        latest_version_at=Subquery(latest.values("created_at")[:1]),
        last_release_at=Subquery(released.values("released_at")[:1]),
        # An InstantApp follows its base image's upstream EOL.
        eol_date=Coalesce(
            "upstream__security_support_end", "base_image__upstream__security_support_end"
        ),
    )


def filtered(filters: OverviewFilters, today: dt.date | None = None) -> QuerySet[Image]:
    today = today or timezone.localdate()
    qs = catalogue_queryset()
    if filters.q:
        qs = qs.filter(
            Q(label__icontains=filters.q)
            | Q(name__icontains=filters.q)
            | Q(distribution__icontains=filters.q)
            | Q(codename__icontains=filters.q)
        )
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.arch:
        # JSON containment is not portable to SQLite; architectures are short lists of two
        # known values, so a text match on the stored JSON is exact enough.
        qs = qs.filter(architectures__icontains=f'"{filters.arch}"')
    warn_until = dates.add_days(today, settings.EOL_WARNING_DAYS)
    if filters.badge == "eol_soon":
        qs = qs.filter(eol_date__gte=today, eol_date__lte=warn_until)  # type: ignore[misc]
    elif filters.badge == "past_eol":
        qs = qs.filter(eol_date__lt=today)  # type: ignore[misc]
    elif filters.badge == "stale":
        # catalog.staleness.is_stale, as a query: the same rule as build_row's badge.
        qs = qs.annotate(
            refresh_reference_at=Coalesce("last_release_at", "latest_version_at")
        ).filter(
            state__in=staleness.LIVE_STATES,
            refresh_reference_at__lt=staleness.stale_before(today),
        )
    elif filters.badge == "deprecated":
        qs = qs.filter(state__in=[ImageState.DEPRECATED, ImageState.RETIRED])
    return qs.order_by(*SORTS[filters.sort])


def build_row(image: Image, today: dt.date, now: dt.datetime) -> Row:
    eol = image.eol_date  # type: ignore[attr-defined]
    eol_days = (eol - today).days if eol else None
    latest_at = image.latest_version_at  # type: ignore[attr-defined]
    released_at = image.last_release_at  # type: ignore[attr-defined]
    row = Row(
        image=image,
        eol_date=eol,
        eol_days=eol_days,
        latest_version=image.latest_version_name,  # type: ignore[attr-defined]
        latest_version_age=(now - latest_at).days if latest_at else None,
        days_since_release=(now - released_at).days if released_at else None,
    )
    if eol_days is not None and eol_days < 0:
        row.badges.append("past_eol")
    elif eol_days is not None and eol_days <= settings.EOL_WARNING_DAYS:
        row.badges.append("eol_soon")
    # The refresh cadence's rule: never-released images count from their latest version, and
    # deprecated or retired images are never stale.
    if staleness.is_stale(image.state, staleness.reference_at(released_at, latest_at), today):
        row.badges.append("stale")
    if image.state in (ImageState.DEPRECATED, ImageState.RETIRED):
        row.badges.append("deprecated")
    elif image.state == ImageState.DEPRECATION_SCHEDULED:
        row.badges.append("deprecation_scheduled")
    return row


def page_of_rows(filters: OverviewFilters, number: str | int | None) -> tuple[Page, list[Row]]:
    """The page `number` of the matching images (the last one if out of range) and its rows.

    Two queries: the count and the page's images; only the page's rows are built.
    """
    today = timezone.localdate()
    now = timezone.now()
    page = Paginator(filtered(filters, today), PAGE_SIZE).get_page(number)
    return page, [build_row(image, today, now) for image in page.object_list]
