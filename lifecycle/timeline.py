"""Images' lives on a time axis: upstream support as bars, the platform's deprecation and
retirement, releases and the next refresh due, and today, drawn as server-side SVG.

Every date of the platform comes from the deprecation plan (`lifecycle.deprecation.plan_for`
and `retirement_date`), and the refresh due date from `catalog.staleness`, so the timeline,
the deprecation panel and the daily policy never disagree. One renderer serves both the
catalogue's timeline (one row per image, grouped by distribution) and the image page's (one
row with its labels written out, stacked on lanes so that close dates never overprint).

The SVG needs no script and no inline style (the Content-Security-Policy refuses both): it is
placed by attributes and coloured by classes of factory.css. Every mark and bar has a
<title>, and the pages show a table of the same dates beside it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from catalog import dates, staleness
from catalog.models import Image, ImageVersion
from lifecycle import deprecation

# Geometry of the drawing, in SVG user units (the drawing scales to its container).
WIDTH = 1000
NAME_WIDTH = 190  # the catalogue's row names, left of the axis
ROW_HEIGHT = 22
GROUP_HEIGHT = 24
AXIS_HEIGHT = 24
LABEL_HEIGHT = 14
CHAR_WIDTH = 6.2  # an estimate of a label's character at 11 px, to keep labels apart
LABEL_GAP = 8

SPANS = (
    ("active", "Active support"),
    ("security", "Security support"),
    ("extended", "Extended support"),
)


@dataclass(frozen=True)
class Span:
    """A bar: a period of upstream support."""

    start: dt.date
    end: dt.date
    kind: str  # active | security | extended
    label: str

    @property
    def title(self) -> str:
        return f"{self.label}: {self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"


@dataclass(frozen=True)
class Mark:
    """A dated point: a release, the deprecation, the retirement, the next refresh due."""

    date: dt.date
    kind: str  # release | deprecation | retirement | refresh | eol
    label: str

    @property
    def title(self) -> str:
        return f"{self.label}: {self.date:%Y-%m-%d}"


@dataclass
class Row:
    """One image's timeline and the dates the table beside it shows."""

    image: Image
    group: str
    release: dt.date | None = None
    active_end: dt.date | None = None
    security_end: dt.date | None = None
    extended_end: dt.date | None = None
    deprecation: dt.date | None = None
    retirement: dt.date | None = None
    refresh_due: dt.date | None = None
    releases: list[tuple[dt.date, str]] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    def dates(self) -> list[dt.date]:
        return (
            [s.start for s in self.spans]
            + [s.end for s in self.spans]
            + [m.date for m in self.marks]
        )


def _group(image: Image) -> str:
    if image.is_os:
        return (image.distribution or "Other").capitalize()
    return "InstantApps"


def build_row(
    image: Image,
    today: dt.date,
    releases: Iterable[tuple[dt.date, str]] = (),
    refresh_reference: dt.datetime | None = None,
) -> Row:
    """The timeline of `image`: its upstream lifecycle (an InstantApp's base image's), the
    deprecation plan, its releases and the next refresh due by the staleness rule.

    Reads `image.upstream` and `image.base_image.upstream` (select them with the image) and
    makes no query of its own."""
    row = Row(image=image, group=_group(image), releases=sorted(releases))
    source = image if image.is_os else image.base_image
    lifecycle = getattr(source, "upstream", None) if source is not None else None
    if lifecycle is not None and not lifecycle.rolling:
        row.release = lifecycle.release_date
        row.active_end = lifecycle.active_support_end
        row.security_end = lifecycle.security_support_end
        row.extended_end = lifecycle.extended_support_end
    plan = deprecation.plan_for(image, today, replacement=False)
    row.deprecation = plan.date
    row.retirement = deprecation.retirement_date(image, plan.date)
    if image.state in staleness.LIVE_STATES and refresh_reference is not None:
        row.refresh_due = staleness.due_on(refresh_reference)

    # Bars: active support from the release, security support after it (or from the release
    # when the distribution names no separate active phase), then extended support.
    start = row.release
    if start and row.active_end and row.active_end > start:
        row.spans.append(Span(start, row.active_end, *SPANS[0]))
    security_start = row.active_end or start
    if security_start and row.security_end and row.security_end > security_start:
        row.spans.append(Span(security_start, row.security_end, *SPANS[1]))
    if row.security_end and row.extended_end and row.extended_end > row.security_end:
        row.spans.append(Span(row.security_end, row.extended_end, *SPANS[2]))
    if row.security_end and not any(s.kind == "security" for s in row.spans):
        row.marks.append(Mark(row.security_end, "eol", "Upstream EOL (security support ends)"))

    for released, name in row.releases:
        row.marks.append(Mark(released, "release", f"Release {name}"))
    if row.refresh_due:
        row.marks.append(Mark(row.refresh_due, "refresh", "Next refresh due"))
    if row.deprecation:
        row.marks.append(Mark(row.deprecation, "deprecation", "Deprecation on this platform"))
    if row.retirement:
        row.marks.append(Mark(row.retirement, "retirement", "Retirement on this platform"))
    return row


# --- the catalogue's rows, in a fixed number of queries -------------------------------------


# What a row reads of an image and of its base image (the deprecation plan included): the
# rest of the rows, and the category, are left unread.
_LIFECYCLE_FIELDS = (
    "release_date",
    "active_support_end",
    "security_support_end",
    "extended_support_end",
    "rolling",
    "deprecation_basis",
)
_FIELDS = (
    "label",
    "kind",
    "state",
    "distribution",
    "version",
    "deprecation_date",
    "deprecation_reason",
    "deprecated_at",
    "grace_period_days",
    "replacement_id",
    "base_image_id",
    *(f"upstream__{f}" for f in _LIFECYCLE_FIELDS),
)


def rows_for(images: QuerySet[Image], today: dt.date | None = None) -> list[Row]:
    """The rows of `images` (a queryset of catalog.overview's, with its annotations), grouped
    by distribution: two queries whatever the number of images."""
    today = today or timezone.localdate()
    image_list = list(
        images.select_related(None)
        .select_related("upstream", "base_image__upstream")
        .only(*_FIELDS, *(f"base_image__{f}" for f in _FIELDS))
    )
    released: dict[int, list[tuple[dt.date, str]]] = defaultdict(list)
    zone = timezone.get_current_timezone()  # once: each look-up goes through a context local
    for image_id, released_at, name, arch in (
        ImageVersion.objects.filter(image__in=images.values("pk"), released_at__isnull=False)
        .order_by("released_at")
        .values_list("image_id", "released_at", "name", "arch")
    ):
        if released_at is not None:  # always, by the filter
            released[image_id].append((released_at.astimezone(zone).date(), f"{name} ({arch})"))
    rows = [
        build_row(
            image,
            today,
            released[image.pk],
            staleness.reference_at(
                image.last_release_at,  # type: ignore[attr-defined]
                image.latest_version_at,  # type: ignore[attr-defined]
            ),
        )
        for image in image_list
    ]
    order = {group: n for n, group in enumerate(sorted({r.group for r in rows}))}
    order["InstantApps"] = len(order)  # after every distribution
    return sorted(rows, key=lambda r: order[r.group])  # stable: the queryset's order within


def row_for_image(image: Image, today: dt.date | None = None) -> Row:
    """The image page's row: one query for its releases and its refresh reference."""
    today = today or timezone.localdate()
    versions = list(
        ImageVersion.objects.filter(image=image)
        .order_by("created_at")
        .values_list("created_at", "released_at", "name", "arch")
    )
    releases = [
        (timezone.localdate(released_at), f"{name} ({arch})")
        for _, released_at, name, arch in versions
        if released_at is not None
    ]
    last_release = max((v[1] for v in versions if v[1] is not None), default=None)
    latest = versions[-1][0] if versions else None
    return build_row(image, today, releases, staleness.reference_at(last_release, latest))


# --- the drawing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """The dates a drawing spans, mapped onto x from `left` to WIDTH."""

    start: dt.date
    end: dt.date
    left: float

    @classmethod
    def around(cls, rows: list[Row], today: dt.date, left: float) -> Axis:
        found = [d for row in rows for d in row.dates() if dates.in_range(d)] + [today]
        start, end = min(found), max(found)
        # Half a year of margin each side, and at least a year in all.
        start = dates.add_days(start, -90)
        end = dates.add_days(max(end, dates.add_days(start, 365)), 90)
        return cls(start, end, left)

    def x(self, day: dt.date) -> float:
        span = max((self.end - self.start).days, 1)
        fraction = (day - self.start).days / span
        return round(self.left + max(0.0, min(1.0, fraction)) * (WIDTH - self.left - 4), 1)

    def years(self) -> list[dt.date]:
        return [dt.date(y, 1, 1) for y in range(self.start.year + 1, self.end.year + 1)]


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _row_shapes(row: Row, axis: Axis, top: float) -> list[str]:
    """The bars and marks of one row whose band starts at `top`."""
    shapes = []
    middle = top + ROW_HEIGHT / 2
    for span in row.spans:
        x1, x2 = axis.x(span.start), axis.x(span.end)
        shapes.append(
            f'<rect class="tl-span tl-{span.kind}" x="{x1}" y="{middle - 5}" '
            f'width="{max(x2 - x1, 1)}" height="10">{_title(span.title)}</rect>'
        )
    for mark in row.marks:
        x = axis.x(mark.date)
        if mark.kind == "release":
            shapes.append(
                f'<circle class="tl-mark tl-release" cx="{x}" cy="{middle}" r="3.5">'
                f"{_title(mark.title)}</circle>"
            )
        else:
            shapes.append(
                f'<path class="tl-mark tl-{mark.kind}" d="M{x} {middle - 7} L{x + 6} {middle} '
                f'L{x} {middle + 7} L{x - 6} {middle} Z">{_title(mark.title)}</path>'
            )
    return shapes


def _axis_shapes(axis: Axis, top: float, bottom: float) -> list[str]:
    shapes = []
    for year in axis.years():
        x = axis.x(year)
        shapes.append(f'<line class="tl-grid" x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/>')
        shapes.append(f'<text class="tl-year" x="{x + 3}" y="{top - 8}">{year.year}</text>')
    return shapes


def _today_shapes(axis: Axis, today: dt.date, top: float, bottom: float) -> list[str]:
    x = axis.x(today)
    return [
        f'<line class="tl-today" x1="{x}" y1="{top - 4}" x2="{x}" y2="{bottom}">'
        f"{_title(f'Today: {today:%Y-%m-%d}')}</line>"
    ]


def _svg(height: float, label: str, shapes: list[str], testid: str) -> SafeString:
    return mark_safe(
        f'<svg class="timeline-svg" data-testid="{testid}" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{_title(label)}{"".join(shapes)}</svg>'
    )


def _image_url_pattern() -> str:
    """The image page's URL with a placeholder for the label: one reverse() for every row
    (a reverse per row costs more than the rest of the row)."""
    return reverse("catalog:image", args=["__label__"])


def catalogue_svg(rows: list[Row], today: dt.date | None = None) -> SafeString:
    """One row per image, under a heading per group, with the year grid and a today line."""
    today = today or timezone.localdate()
    pattern = _image_url_pattern()
    axis = Axis.around(rows, today, NAME_WIDTH)
    shapes: list[str] = []
    y = float(AXIS_HEIGHT)
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            shapes.append(
                f'<text class="tl-group" x="0" y="{y + GROUP_HEIGHT - 7}">{escape(group)}</text>'
            )
            y += GROUP_HEIGHT
        shapes.append(
            f'<a href="{escape(pattern.replace("__label__", row.image.label))}">'
            f'<text class="tl-name" x="8" '
            f'y="{y + ROW_HEIGHT / 2 + 4}">{escape(row.image.label)}</text></a>'
        )
        shapes += _row_shapes(row, axis, y)
        y += ROW_HEIGHT
    bottom = y + 4
    shapes = _axis_shapes(axis, AXIS_HEIGHT, bottom) + shapes
    shapes += _today_shapes(axis, today, AXIS_HEIGHT, bottom)
    return _svg(bottom, "Lifecycle of the catalogue's images", shapes, "catalogue-timeline")


def _lanes(items: list[tuple[float, str]]) -> list[int]:
    """The lane (0, 1, ...) of each label, left to right, so that no two labels on one lane
    overlap: a label goes on the first lane whose last label ends before it starts."""
    ends: list[float] = []
    lanes = []
    for x, text in items:
        width = len(text) * CHAR_WIDTH
        left = x - width / 2
        for lane, end in enumerate(ends):
            if end + LABEL_GAP <= left:
                ends[lane] = left + width
                lanes.append(lane)
                break
        else:
            ends.append(left + width)
            lanes.append(len(ends) - 1)
    return lanes


def image_svg(row: Row, today: dt.date | None = None) -> SafeString:
    """One image's row with each date written under it; labels of close dates go on lanes
    below one another instead of overprinting."""
    today = today or timezone.localdate()
    axis = Axis.around([row], today, 60)
    top = float(AXIS_HEIGHT)
    labelled = [m for m in row.marks if m.kind != "release"] + [
        Mark(s.end, s.kind, f"End of {s.label.lower()}") for s in row.spans
    ]
    if row.release:
        labelled.append(Mark(row.release, "upstream-release", "Upstream release"))
    labelled.append(Mark(today, "today", "Today"))
    labelled.sort(key=lambda m: (m.date, m.kind != "today"))
    texts = [(axis.x(m.date), f"{m.label} {m.date:%Y-%m-%d}") for m in labelled]
    # Keep labels inside the drawing: anchor by the middle, clamped to the edges.
    lanes = _lanes(
        [
            (min(max(x, len(t) * CHAR_WIDTH / 2), WIDTH - len(t) * CHAR_WIDTH / 2), t)
            for x, t in texts
        ]
    )
    band_bottom = top + ROW_HEIGHT
    shapes = _axis_shapes(axis, top, band_bottom) + _row_shapes(row, axis, top)
    for mark, (x, text), lane in zip(labelled, texts, lanes, strict=True):
        centre = min(max(x, len(text) * CHAR_WIDTH / 2), WIDTH - len(text) * CHAR_WIDTH / 2)
        y = band_bottom + 14 + lane * LABEL_HEIGHT
        shapes.append(
            f'<line class="tl-leader" x1="{x}" y1="{band_bottom - 4}" x2="{x}" y2="{y - 10}"/>'
        )
        shapes.append(
            f'<text class="tl-label tl-label-{mark.kind}" x="{centre}" y="{y}" '
            f'text-anchor="middle" data-lane="{lane}">{escape(text)}</text>'
        )
    bottom = band_bottom + 14 + (max(lanes, default=0) + 1) * LABEL_HEIGHT
    shapes += _today_shapes(axis, today, top, band_bottom)
    return _svg(bottom, f"Lifecycle of {row.image.label}", shapes, "image-timeline")


# --- the table of the same dates --------------------------------------------------------------

COLUMNS = (
    ("release", "Upstream release"),
    ("active_end", "End of active support"),
    ("security_end", "Upstream EOL (security support ends)"),
    ("extended_end", "End of extended support"),
    ("deprecation", "Deprecation on this platform"),
    ("retirement", "Retirement"),
    ("last_release", "Last release"),
    ("refresh_due", "Next refresh due"),
)


def _day(value: dt.date | None) -> str:
    return f"{value:%Y-%m-%d}" if value else "—"


def _cells(row: Row) -> str:
    cells = []
    for name, _ in COLUMNS:
        if name == "last_release":
            text = (
                f'{_day(row.releases[-1][0])} <span class="muted">({len(row.releases)} in all)'
                "</span>"
                if row.releases
                else "—"
            )
        else:
            text = _day(getattr(row, name))
        cells.append(f'<td data-col="{name}">{text}</td>')
    return "".join(cells)


def dates_table(rows: list[Row], *, names: bool = True) -> SafeString:
    """The drawing's dates as a table (for screen readers, search and copying): one row per
    image under its group's heading, or the single row of an image page (`names=False`).
    Written here rather than by the template engine, which took most of the page's time."""
    head = "".join(f'<th scope="col">{escape(label)}</th>' for _, label in COLUMNS)
    parts = [
        '<table class="timeline-dates" data-testid="timeline-dates"><tr>',
        '<th scope="col">Image</th>' if names else "",
        head,
        "</tr>",
    ]
    pattern = _image_url_pattern()
    group = None
    for row in rows:
        if names and row.group != group:
            group = row.group
            parts.append(
                f'<tr class="group"><th colspan="{len(COLUMNS) + 1}" scope="rowgroup">'
                f"{escape(group)}</th></tr>"
            )
        label = escape(row.image.label)
        name = (
            f'<th scope="row"><a href="{escape(pattern.replace("__label__", row.image.label))}">'
            f"{label}</a></th>"
            if names
            else ""
        )
        parts.append(f'<tr data-image="{label}">{name}{_cells(row)}</tr>')
    parts.append("</table>")
    return mark_safe("".join(parts))  # every text is escaped, or a date
