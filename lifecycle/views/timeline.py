"""The whole catalogue's lifecycle on one page: one row per image, filtered as the overview."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from catalog import overview
from catalog.choices import ImageKind
from lifecycle import timeline


@require_GET
def catalogue_timeline(request: HttpRequest) -> HttpResponse:
    """Every image matching the overview's filters (no pagination: the drawing is the point),
    in a number of queries that does not grow with the catalogue."""
    today = timezone.localdate()
    filters = overview.OverviewFilters.from_query(request.GET)
    rows = timeline.rows_for(overview.filtered(filters, today), today)
    context = {
        "filters": filters,
        "rows": rows,
        "svg": timeline.catalogue_svg(rows, today) if rows else None,
        "table": timeline.dates_table(rows),
        "today": today,
        "badges": overview.BADGES,
        "kinds": ImageKind.choices,
    }
    return render(request, "lifecycle/timeline/page.html", context)
