"""Every page at catalogue scale, against the Django admin changelist of the same model.

Two catalogues are generated (bench/catalogue_data.py): SMALL and LARGE images (default 100
and 1,000), 10 versions each with their releases, local images, builds and test results,
and in both the same 100,000 customers, 300,000 notices, 200,000 audit entries and 2,000
image requests. Each size runs in its own process on its own SQLite file (kept in
BENCH_PAGES_DIR, default $TMPDIR/bench-pages, and reused by later runs).

Every page is requested through Django's test client as a superuser, alternating with its
baseline (ours, admin, ours, admin, ...), and the medians are compared: the ratio is ours
over the admin. A page "with its panels" is the page plus every region it loads with htmx
on load (hx-trigger="load"), each requested as htmx would, but the navigation's count. The
admin has no changelist for customers, notices and requests: the bench registers a plain
ModelAdmin for each, showing the same columns. Growth is the LARGE median over the SMALL one.

    .venv/bin/python bench/pages.py [SMALL LARGE]     # default 100 1000
    BENCH_PAGES_ROUNDS=7 .venv/bin/python bench/pages.py 100 1000
    BENCH_PAGES_ONLY="feed,image page" .venv/bin/python bench/pages.py 0 1000

BENCH_PAGES_ONLY measures only the pages whose name holds one of its comma-separated words;
a SMALL of 0 skips the small catalogue (no growth column).

Targets (issue 18): every HTML list page within 1.5x its admin changelist and at most 15
queries, growing less than 2x from SMALL to LARGE; the feed within 3x and at most 40 MB of
Python allocations; the image and version pages with their panels within 3x the admin's
view page.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_VERSION = "1"  # bump when catalogue_data.py changes what it writes
ROUNDS = int(os.environ.get("BENCH_PAGES_ROUNDS", "5"))
# Notices are three per customer and audit entries two: BENCH_PAGES_CUSTOMERS=1000 makes a
# quick trial run.
CUSTOMERS = int(os.environ.get("BENCH_PAGES_CUSTOMERS", "100000"))
ONLY = [word.strip() for word in os.environ.get("BENCH_PAGES_ONLY", "").split(",") if word.strip()]


def _directory() -> Path:
    default = Path(tempfile.gettempdir()) / "bench-pages"
    path = Path(os.environ.get("BENCH_PAGES_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _setup(db: Path) -> None:
    os.environ.update(
        SQLITE_PATH=str(db),
        DJANGO_SECRET_KEY="bench-key",
        FACTORY_LOCAL="1",
        DJANGO_DEBUG="0",
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_ALLOWED_HOSTS="testserver,localhost",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    _register_baselines()


def _register_baselines() -> None:
    """Plain changelists for the models the admin does not list, with our pages' columns.

    Registered before the URL configuration is first loaded, so that the admin routes them.
    """
    from django.contrib import admin

    from lifecycle.models import Customer, ImageRequest, Notice

    class NoticeBaseline(admin.ModelAdmin):
        list_display = ["state", "image", "customer", "kind", "deprecation_date", "last_error"]
        list_select_related = ["image", "customer"]

    class CustomerBaseline(admin.ModelAdmin):
        list_display = ["name", "email", "language", "project_id", "organization_id"]

    class RequestBaseline(admin.ModelAdmin):
        list_display = ["name", "kind", "status", "created_at"]

    admin.site.register(Notice, NoticeBaseline)
    admin.site.register(Customer, CustomerBaseline)
    admin.site.register(ImageRequest, RequestBaseline)


def _generate(images: int, db: Path) -> None:
    from django.core.management import call_command

    from bench import catalogue_data

    print(f"generating {images} images into {db} ...", file=sys.stderr)
    call_command("migrate", verbosity=0)
    catalogue_data.generate(
        images,
        customers=CUSTOMERS,
        notices=3 * CUSTOMERS,
        audit=2 * CUSTOMERS,
        say=lambda line: print(line, file=sys.stderr),
    )


# --- measuring ---------------------------------------------------------------------------------


LOADED_PANEL = re.compile(r'hx-get="([^"]+)" hx-trigger="load"')


class Fetch:
    """One page as a person gets it: the URL, and with `panels` every region it loads.

    The navigation's count (in base.html, on every page) is not one of a page's panels: the
    browser keeps it a minute, and bench/home_page.py measures it.
    """

    navigation: frozenset[str] = frozenset()

    def __init__(
        self,
        client: Any,
        url: str,
        *,
        panels: bool = False,
        before: Callable[[], None] | None = None,
        **headers: str,
    ) -> None:
        self.client, self.url, self.panels, self.headers = client, url, panels, headers
        self.before = before

    def __call__(self) -> tuple[int, int]:
        """(status of the page, bytes of the page and its panels)."""
        if self.before is not None:
            self.before()
        response = self.client.get(self.url, headers=self.headers)
        size = len(response.content)
        if self.panels:
            for url in LOADED_PANEL.findall(response.content.decode()):
                if url in self.navigation:
                    continue
                panel = self.client.get(url.replace("&amp;", "&"), headers={"HX-Request": "true"})
                assert panel.status_code == 200, (url, panel.status_code)
                size += len(panel.content)
        return response.status_code, size


def _queries(fetch: Fetch) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fetch()
    return len(ctx.captured_queries)


def _pair(name: str, ours: Fetch, baseline: Fetch, expect: int = 200) -> dict[str, Any]:
    status, size = ours()
    assert status == expect, (name, ours.url, status)
    assert baseline()[0] == 200, (name, baseline.url)
    timings: dict[str, list[float]] = {"ours": [], "admin": []}
    for _ in range(ROUNDS):
        for side, fetch in (("ours", ours), ("admin", baseline)):
            started = time.perf_counter()
            fetch()
            timings[side].append(time.perf_counter() - started)
    ours_ms = statistics.median(timings["ours"]) * 1000
    admin_ms = statistics.median(timings["admin"]) * 1000
    return {
        "page": name,
        "ours_ms": ours_ms,
        "admin_ms": admin_ms,
        "ratio": ours_ms / admin_ms,
        "queries": _queries(ours),
        "admin_queries": _queries(baseline),
        "kb": size / 1024,
    }


def _feed_memory_mb(client: Any) -> float:
    """Peak Python allocations while the full feed is built and answered (tracemalloc), MB."""
    from lifecycle import feed

    feed._last_built = None
    tracemalloc.start()
    client.get("/lifecycle/feed.json")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024 / 1024


def measure(images: int) -> dict[str, Any]:
    db = _directory() / f"pages-{images}-{CUSTOMERS}-v{DATA_VERSION}.sqlite3"
    done = db.with_suffix(".done")
    if not done.exists():
        db.unlink(missing_ok=True)
    _setup(db)
    if not done.exists():
        _generate(images, db)
        done.touch()
    else:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # a kept catalogue gets any newer index

    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from builds.models import CheckResult
    from catalog.models import AuditEntry, Image, ImageVersion
    from lifecycle import feed

    client = Client()
    client.force_login(User.objects.get(username="bench"))
    Fetch.navigation = frozenset([reverse("home_count")])
    image = Image.objects.filter(kind="os", state="active").order_by("label")[images // 3]
    version = image.versions.order_by("-created_at").first()
    assert version is not None
    deep_audit = AuditEntry.objects.order_by("created_at", "id").values_list("id", flat=True)[50]

    def page(url: str, **options: Any) -> Fetch:
        return Fetch(client, url, **options)

    def forget_feed() -> None:
        feed._last_built = None  # as after a change: the document is built again

    def admin(path: str) -> Fetch:
        return page("/admin/" + path)

    admin_images = admin("catalog/image/")
    overview = [
        ("overview", "/images/"),
        ("overview, sorted by name", "/images/?sort=name"),
        ("overview, sorted by EOL", "/images/?sort=eol"),
        ("overview, sorted by age", "/images/?sort=age"),
        ("overview, stale only", "/images/?badge=stale"),
        ("overview, search", "/images/?q=debian"),
    ]
    pages = [(name, page(url), admin_images) for name, url in overview]
    pages += [
        ("overview, page 5 (htmx)", page("/images/?page=5", HX_Request="true"), admin_images),
        ("builds", page("/builds/"), admin("builds/build/")),
        ("audit log", page("/audit/"), admin("catalog/auditentry/")),
        (
            "audit log, last page",
            page(f"/audit/?before={deep_audit}"),
            admin("catalog/auditentry/"),
        ),
        (
            "notices to decide",
            page("/lifecycle/notices/"),
            admin("lifecycle/notice/?state__exact=uncertain"),
        ),
        ("customers", page("/lifecycle/customers/"), admin("lifecycle/customer/")),
        (
            "customers, last page",
            page(f"/lifecycle/customers/?page={CUSTOMERS // 100}"),
            admin("lifecycle/customer/"),
        ),
        ("requests", page("/lifecycle/requests/"), admin("lifecycle/imagerequest/")),
        ("feed, unchanged since the last request", page("/lifecycle/feed.json"), admin_images),
        ("feed, built afresh", page("/lifecycle/feed.json", before=forget_feed), admin_images),
        (
            "feed, a page of 50 images",
            page("/lifecycle/feed.json?page=3&per_page=50"),
            admin_images,
        ),
        # Every image on one page (not paginated): the 1,000-row admin changelist is the
        # fairer baseline, but the admin lists 100 a page.
        ("timeline, every image", page("/lifecycle/timeline/"), admin_images),
        (
            "image page with its panels",
            page(image.get_absolute_url(), panels=True),
            admin(f"catalog/image/{image.pk}/change/"),
        ),
        (
            "version page with its panels",
            page(version.get_absolute_url(), panels=True),
            admin(f"catalog/imageversion/{version.pk}/change/"),
        ),
    ]
    etag = client.get("/lifecycle/feed.json")["ETag"]
    pages.append(
        ("feed, 304 Not Modified", page("/lifecycle/feed.json", If_None_Match=etag), admin_images)
    )
    if ONLY:
        pages = [row for row in pages if any(word in row[0] for word in ONLY)]
    results = []
    for name, ours, baseline in pages:
        expect = 304 if "304" in name else 200
        results.append(_pair(name, ours, baseline, expect))
        print(f"  {images}: {name}: {results[-1]['ratio']:.2f}x", file=sys.stderr)
    return {
        "images": images,
        "versions": ImageVersion.objects.count(),
        "check_results": CheckResult.objects.count(),
        "feed_peak_mb": (
            _feed_memory_mb(client) if not ONLY or any("feed" in w for w in ONLY) else None
        ),
        "pages": results,
    }


# --- reporting ---------------------------------------------------------------------------------


def run_size(images: int, script: str = __file__) -> dict[str, Any]:
    """Run `script --one <images>` in a fresh process (its own database) and read its JSON."""
    done = subprocess.run(
        [sys.executable, script, "--one", str(images)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    return json.loads(done.stdout)


def main(small: int, large: int) -> None:
    runs = ([run_size(small)] if small else []) + [run_size(large)]
    by_page = {row["page"]: row for row in runs[0]["pages"]} if small else {}
    for run in runs:
        peak = run["feed_peak_mb"]
        print(
            f"{run['images']} images: {run['versions']} versions, {run['check_results']} "
            "check results"
            + (f"; feed peak {peak:.0f} MB of Python allocations" if peak is not None else "")
        )
    print()
    print(
        f"| page at {large} images | ours | admin | ratio | queries (admin) | "
        f"grows {small} -> {large} |"
    )
    print("|---|---|---|---|---|---|")
    for row in runs[-1]["pages"]:
        small_row = by_page.get(row["page"])
        growth = f"{row['ours_ms'] / small_row['ours_ms']:.2f}x" if small_row else "-"
        print(
            f"| {row['page']} | {row['ours_ms']:.0f} ms | {row['admin_ms']:.0f} ms | "
            f"{row['ratio']:.2f}x | {row['queries']} ({row['admin_queries']}) | {growth} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        sizes = [int(a) for a in sys.argv[1:3]] or [100, 1000]
        main(*sizes)
