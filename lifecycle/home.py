"""The home page: what needs a person today, one section per kind of work.

Each section is a queryset (or a small read) whose rows link to the page where the work is
done. The page shows at most ROWS_SHOWN rows of each section and the full count of every
section; all the counts come from one statement (`counts`), which the navigation also shows.
Nothing here runs a query per row: the page costs the same number of queries at 10 images as
at 1,000.

Apps above lifecycle (advisories) add their own sections with `add_section`, as they add
sections to the feed: a section that is not registered is simply not shown.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    Aggregate,
    CharField,
    Count,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, Concat, RowNumber
from django.urls import reverse
from django.utils import timezone

from builds.choices import BuildState, CheckState, TestRunState
from builds.models import Build, CheckResult, JanitorRun, TestRun
from catalog import dates, staleness
from catalog.choices import ImageState, LocalImageState, StorageType, VersionState
from catalog.models import (
    Image,
    ImageVersion,
    LocalImage,
    UpstreamLifecycle,
    UpstreamSource,
    Zone,
)
from lifecycle.models import (
    ImageRequest,
    NoticeState,
    ParityProblem,
    RequestStatus,
    UpstreamCheck,
    ZoneParityGap,
)
from lifecycle.refresh import refresh_margin_days

ROWS_SHOWN = 50
DEPRECATION_HORIZON_DAYS = 90
NOTICE_PROGRESS = (
    NoticeState.PLANNED,
    NoticeState.SENT,
    NoticeState.FAILED,
    NoticeState.UNCERTAIN,
)
FAILING = (CheckState.FAILED, CheckState.ERROR)


@dataclass
class Section:
    """One kind of work: its rows (at most ROWS_SHOWN), their full count, and where to go."""

    key: str
    title: str
    rows: list[Any]
    count: int
    more_url: str = ""
    template: str = ""  # a partial of lifecycle/home.html, or a template of the adding app


@dataclass
class Extra:
    """A section an app above lifecycle adds: a queryset to count and a way to read rows."""

    key: str
    title: str
    queryset: Callable[[dt.date], QuerySet[Any]]
    rows: Callable[[QuerySet[Any]], list[Any]]
    template: str
    more_url: str = ""


_extras: list[Extra] = []


def add_section(extra: Extra) -> None:
    """Register a section of another app (called from its AppConfig.ready, once)."""
    if all(existing.key != extra.key for existing in _extras):
        _extras.append(extra)


# --- the sections as querysets (each one statement) --------------------------------------------


def failed_builds() -> QuerySet[Build]:
    """Builds that failed and are still the latest build of their image and architecture."""
    latest = Build.objects.filter(image=OuterRef("image"), arch=OuterRef("arch")).order_by(
        "-created_at", "-id"
    )
    return (
        Build.objects.filter(state=BuildState.FAILED, pk=Subquery(latest.values("pk")[:1]))
        .select_related("image")
        .defer("image__description")
        .order_by("-created_at", "-id")
    )


def newest_versions() -> QuerySet[ImageVersion]:
    """The newest version of each live image and architecture (not superseded): one window
    over the versions, rather than a correlated subquery per version."""
    return (
        ImageVersion.objects.filter(image__state__in=staleness.LIVE_STATES)
        .annotate(
            newest_first=Window(
                RowNumber(),
                partition_by=[F("image"), F("arch")],
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(newest_first=1)
    )


def failed_test_runs(newest: list[int]) -> QuerySet[TestRun]:
    """The latest test run of each (version, zone) that failed, for versions not superseded.

    `newest` is `newest_versions()`'s ids, read first (one statement): only their runs are
    looked at, whatever the number of older versions and their results. (Given as a subquery
    instead, SQLite ran the window again for every run.)"""
    latest_run = TestRun.objects.filter(
        version=OuterRef("version"), zone=OuterRef("zone")
    ).order_by("-created_at", "-id")
    failing = CheckResult.objects.filter(state__in=FAILING, test_run__version__in=newest)
    return (
        TestRun.objects.filter(version__in=newest)
        .filter(pk=Subquery(latest_run.values("pk")[:1]))
        .filter(
            Q(state=TestRunState.ERROR)
            | Q(state=TestRunState.FINISHED, pk__in=failing.values("test_run"))
        )
        .select_related("version__image", "zone")
        .only(
            "id",
            "state",
            "error",
            "created_at",
            "finished_at",
            "zone__code",
            "version__id",
            "version__name",
            "version__arch",
            "version__image__label",
            "version__image__name",
        )
        .order_by("-created_at", "-id")
    )


def stale_images(today: dt.date) -> QuerySet[Image]:
    """Live images stale, or due within the refresh margin (catalog.staleness's rule)."""
    released = ImageVersion.objects.filter(image=OuterRef("pk"), released_at__isnull=False)
    built = ImageVersion.objects.filter(image=OuterRef("pk"))
    horizon = dates.add_days(today, refresh_margin_days())
    return (
        Image.objects.filter(state__in=staleness.LIVE_STATES)
        .annotate(
            last_release=Subquery(released.order_by("-released_at").values("released_at")[:1]),
            latest_built=Subquery(built.order_by("-created_at", "-id").values("created_at")[:1]),
        )
        .annotate(reference=Coalesce("last_release", "latest_built"))
        .filter(reference__lt=staleness.stale_before(horizon))
        .only("id", "label", "name", "state")
        .order_by("reference", "label")
    )


def deprecations(today: dt.date) -> QuerySet[Image]:
    """Deprecations scheduled for the next DEPRECATION_HORIZON_DAYS days (or overdue)."""
    return (
        Image.objects.filter(
            state=ImageState.DEPRECATION_SCHEDULED,
            deprecation_date__lte=dates.add_days(today, DEPRECATION_HORIZON_DAYS),
        )
        .only("id", "label", "name", "state", "deprecation_date")
        .order_by("deprecation_date", "label")
    )


def eol_proposals() -> QuerySet[UpstreamLifecycle]:
    """Earlier EOLs an import proposed, waiting for a manager (catalog.eol)."""
    return (
        UpstreamLifecycle.objects.filter(proposed_security_support_end__isnull=False)
        .select_related("image")
        .only(
            "id",
            "security_support_end",
            "proposed_security_support_end",
            "proposed_at",
            "eol_product",
            "eol_cycle",
            "image__label",
            "image__name",
        )
        .order_by("proposed_at", "image__label")
    )


def newer_serials() -> QuerySet[UpstreamSource]:
    """Channels whose latest check saw a serial other than the latest built version's."""
    checks = (
        UpstreamCheck.objects.filter(image=OuterRef("image"), arch=OuterRef("arch"))
        .exclude(serial_seen="")
        .order_by("-checked_at", "-id")
    )
    built = ImageVersion.objects.filter(image=OuterRef("image"), arch=OuterRef("arch")).order_by(
        "-created_at", "-id"
    )
    return (
        UpstreamSource.objects.filter(image__state__in=staleness.LIVE_STATES)
        .annotate(
            serial_seen=Subquery(checks.values("serial_seen")[:1]),
            seen_at=Subquery(checks.values("checked_at")[:1]),
            outcome=Subquery(checks.values("outcome")[:1]),
            built_serial=Coalesce(Subquery(built.values("upstream_serial")[:1]), Value("")),
        )
        .filter(serial_seen__isnull=False)
        .exclude(serial_seen=F("built_serial"))
        .select_related("image")
        .only("id", "arch", "image__label", "image__name")
        .order_by("image__label", "arch")
    )


class _PairList(Aggregate):
    """The aggregated values joined by commas: GROUP_CONCAT on SQLite, STRING_AGG elsewhere."""

    function = "STRING_AGG"
    template = "%(function)s(%(distinct)s%(expressions)s, ',')"
    allow_distinct = True
    output_field = CharField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return super().as_sql(compiler, connection, function="GROUP_CONCAT", **extra)


def _has_storage(kind: str) -> Q:
    """The image publishes on `kind` (its storage_types list holds it; two entries at most)."""
    return Q(image__storage_types__0=kind) | Q(image__storage_types__1=kind)


def zone_gaps(enabled_zones: int) -> QuerySet[ImageVersion]:
    """Current versions (catalog.current's rule) not available in every enabled zone on every
    storage type of their image, as the dashboard records them (its local images);
    `enabled_zones` is how many zones are enabled. Each row carries `available_pairs`
    ("zone|storage_type,..."), from which the page names what is missing."""
    latest = ImageVersion.objects.filter(
        image=OuterRef("image"),
        arch=OuterRef("arch"),
        state=VersionState.RELEASED,
        released_at__isnull=False,
    ).order_by("-released_at", "-id")
    return (
        ImageVersion.objects.filter(
            state=VersionState.RELEASED,
            released_at__isnull=False,
            image__state__in=staleness.LIVE_STATES,
        )
        .filter(pk=Subquery(latest.values("pk")[:1]))
        .annotate(
            **{
                f"available_{kind.name.lower()}": Count(
                    "local_images",
                    filter=Q(
                        local_images__state=LocalImageState.AVAILABLE,
                        local_images__zone__enabled=True,
                        local_images__storage_type=kind,
                    ),
                    distinct=True,
                )
                for kind in StorageType
            }
        )
        .filter(
            Q(_has_storage(StorageType.LOCAL), available_local__lt=enabled_zones)
            | Q(_has_storage(StorageType.SBS), available_sbs__lt=enabled_zones)
        )
        .select_related("image")
        .only("id", "name", "arch", "image__label", "image__storage_types")
        .order_by("image__label", "arch")
    )


def _with_available_pairs(versions: QuerySet[ImageVersion]) -> QuerySet[ImageVersion]:
    """The shown rows with their available (zone, storage type) pairs, in the same query."""
    pairs = (
        LocalImage.objects.filter(
            version=OuterRef("pk"), state=LocalImageState.AVAILABLE, zone__enabled=True
        )
        .order_by()
        .values("version")
        .annotate(pairs=_PairList(Concat("zone__code", Value("|"), "storage_type")))
        .values("pairs")
    )
    return versions.annotate(available_pairs=Subquery(pairs, output_field=CharField()))


def _missing_zones(versions: list[ImageVersion], enabled: list[str]) -> None:
    """Name, on each row, the enabled (zone, storage type) pairs it is not available in."""
    for version in versions:
        present = set(filter(None, (version.available_pairs or "").split(",")))  # type: ignore[attr-defined]
        kinds = [k for k in StorageType if k in (version.image.storage_types or StorageType.values)]
        version.missing_zones = [  # type: ignore[attr-defined]
            f"{code} ({kind.label})" if len(kinds) > 1 else code
            for code in enabled
            for kind in kinds
            if f"{code}|{kind.value}" not in present
        ]


def parity_gaps() -> QuerySet[ZoneParityGap]:
    """What the last zone parity check found in the cloud (lifecycle.parity): images gone or
    not available, local images not offered, zones it could not read. What is not published
    at all is the live "zones" section's."""
    return (
        ZoneParityGap.objects.exclude(problem=ParityProblem.NOT_PUBLISHED)
        .select_related("version__image", "zone")
        .only(
            "id",
            "problem",
            "detail",
            "storage_type",
            "found_at",
            "zone__code",
            "version__name",
            "version__arch",
            "version__image__label",
        )
        .order_by("zone__code", "version__image__label", "storage_type", "id")
    )


def image_requests() -> QuerySet[ImageRequest]:
    """New requests with at least one confirmed requester, the most requested first."""
    return (
        ImageRequest.objects.confirmed()
        .filter(status=RequestStatus.NEW)
        .only("id", "name", "kind", "status", "created_at")
        .order_by("-confirmed_count", "created_at")
    )


def janitor_findings() -> list[dict[str, Any]]:
    """The latest janitor run's orphans it did not delete, and its errors (one query)."""
    run = JanitorRun.objects.filter(finished_at__isnull=False).order_by("-started_at").first()
    if run is None:
        return []
    rows: list[dict[str, Any]] = [
        {**finding, "run": run}
        for finding in run.findings
        if finding.get("orphan") and finding.get("action") != "deleted"
    ]
    rows += [{"kind": "error", "reason": error, "run": run} for error in run.errors]
    return rows


# --- counts in one statement ------------------------------------------------------------------


def _querysets(today: dt.date, enabled_zones: int | None = None) -> dict[str, QuerySet[Any]]:
    if enabled_zones is None:
        enabled_zones = Zone.objects.filter(enabled=True).count()
    sets: dict[str, QuerySet[Any]] = {
        "builds": failed_builds(),
        "tests": failed_test_runs(list(newest_versions().values_list("pk", flat=True))),
        "stale": stale_images(today),
        "deprecations": deprecations(today),
        "eol": eol_proposals(),
        "serials": newer_serials(),
        "requests": image_requests(),
        "zones": zone_gaps(enabled_zones),
        "parity": parity_gaps(),
    }
    for extra in _extras:
        sets[extra.key] = extra.queryset(today)
    return sets


def counts(
    today: dt.date | None = None, sets: dict[str, QuerySet[Any]] | None = None
) -> dict[str, int]:
    """Every section's count (the janitor's excepted) in a single SELECT of subqueries."""
    today = today or timezone.localdate()
    parts: list[str] = []
    params: list[Any] = []
    sets = sets if sets is not None else _querysets(today)
    for index, qs in enumerate(sets.values()):
        try:
            sql, qs_params = qs.order_by().values("pk").query.sql_with_params()
        except EmptyResultSet:  # e.g. no newest version at all: nothing to count
            parts.append("0")
            continue
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS home_{index})")
        params.extend(qs_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        values = cursor.fetchone()
    return dict(zip(sets, values, strict=True))


# --- the page -----------------------------------------------------------------------------------


@dataclass
class Home:
    sections: list[Section] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(section.count for section in self.sections)


def _failing_checks(runs: list[TestRun]) -> None:
    by_run: dict[int, list[CheckResult]] = defaultdict(list)
    results = CheckResult.objects.filter(test_run__in=[r.pk for r in runs], state__in=FAILING).only(
        "id", "test_run_id", "check_name", "state", "reason"
    )
    for result in results.order_by("check_name"):
        by_run[result.test_run_id].append(result)
    for run in runs:
        run.failing = by_run.get(run.pk, [])  # type: ignore[attr-defined]


def _with_notice_progress(images: QuerySet[Image]) -> QuerySet[Image]:
    """The count of each notice state for the date each image announces, as annotations
    (on the rows shown only: the section's count does not need them)."""
    return images.annotate(
        **{
            f"notices_{state.value}": Count(
                "notices",
                filter=Q(notices__state=state, notices__deprecation_date=F("deprecation_date")),
            )
            for state in NOTICE_PROGRESS
        }
    )


def _notice_progress(images: list[Image]) -> None:
    for image in images:
        image.notice_progress = [  # type: ignore[attr-defined]
            (state.value, state.label, getattr(image, f"notices_{state.value}"))
            for state in NOTICE_PROGRESS
        ]


def _stale_rows(images: list[Image], today: dt.date) -> None:
    margin_start = today
    for image in images:
        reference = image.reference  # type: ignore[attr-defined]
        image.due_on = staleness.due_on(reference)  # type: ignore[attr-defined]
        image.days_left = (image.due_on - margin_start).days  # type: ignore[attr-defined]
        built = image.latest_built  # type: ignore[attr-defined]
        released = image.last_release  # type: ignore[attr-defined]
        image.awaiting_release = bool(  # type: ignore[attr-defined]
            built and released and built > released
        )


def build(today: dt.date | None = None) -> Home:
    """The home page's sections, in the order a person would take them."""
    today = today or timezone.localdate()
    enabled = list(
        Zone.objects.filter(enabled=True).order_by("code").values_list("code", flat=True)
    )
    sets = _querysets(today, len(enabled))
    counted = counts(today, sets)

    def rows(key: str) -> list[Any]:
        return list(sets[key][:ROWS_SHOWN])

    builds_rows = rows("builds")
    test_rows = rows("tests")
    _failing_checks(test_rows)
    stale_rows = rows("stale")
    _stale_rows(stale_rows, today)
    deprecation_rows = list(_with_notice_progress(sets["deprecations"])[:ROWS_SHOWN])
    _notice_progress(deprecation_rows)
    janitor = janitor_findings()
    gap_rows = list(_with_available_pairs(sets["zones"])[:ROWS_SHOWN])
    _missing_zones(gap_rows, enabled)
    home = Home(
        [
            Section(
                "builds",
                "Failed builds",
                builds_rows,
                counted["builds"],
                reverse("builds:list") + "?state=failed",
            ),
            Section("tests", "Failed test runs", test_rows, counted["tests"]),
            Section("eol", "Upstream EOL changes to decide", rows("eol"), counted["eol"]),
            Section(
                "deprecations",
                f"Deprecations in the next {DEPRECATION_HORIZON_DAYS} days",
                deprecation_rows,
                counted["deprecations"],
                reverse("lifecycle:notices"),
            ),
            Section(
                "stale",
                "Stale, or due within the refresh margin",
                stale_rows,
                counted["stale"],
                reverse("lifecycle:triggers"),
            ),
            Section(
                "serials",
                "Upstream serials newer than the last build",
                rows("serials"),
                counted["serials"],
                reverse("lifecycle:triggers"),
            ),
            Section(
                "janitor",
                "Janitor findings",
                janitor[:ROWS_SHOWN],
                len(janitor),
                reverse("builds:janitor"),
            ),
            Section(
                "requests",
                "Image requests",
                rows("requests"),
                counted["requests"],
                reverse("lifecycle:requests"),
            ),
            Section(
                "zones",
                "Current versions missing from an enabled zone",
                gap_rows,
                counted["zones"],
                reverse("lifecycle:parity"),
            ),
            Section(
                "parity",
                "Zone parity: differences found in the cloud",
                rows("parity"),
                counted["parity"],
                reverse("lifecycle:parity"),
            ),
        ]
    )
    for extra in _extras:
        home.sections.append(
            Section(
                extra.key,
                extra.title,
                extra.rows(sets[extra.key][:ROWS_SHOWN]),
                counted[extra.key],
                extra.more_url,
                extra.template,
            )
        )
    return home


def total(today: dt.date | None = None) -> int:
    """What the navigation shows: one statement, plus the latest janitor run."""
    return sum(counts(today).values()) + len(janitor_findings())


__all__ = ["Extra", "Home", "Section", "add_section", "build", "counts", "total"]
