"""The home page ("what needs you today") against the Django admin changelist of images
showing 1,000 rows a page (`list_per_page=1000`), on bench/pages.py's catalogues.

Each size (default 100 and 1,000 images, 10 versions each) is the SQLite file bench/pages.py
generates and keeps (BENCH_PAGES_DIR); a missing one is generated first. In its own process,
the home page and the navigation's count (the request every other page makes after it is
shown) are requested through Django's test client as a superuser, alternating with the admin
changelist, and the medians compared. The queries of each are counted; the home page's must
be the same at both sizes and at most 20.

    .venv/bin/python bench/home_page.py [SMALL LARGE]     # default 100 1000
    BENCH_PAGES_ROUNDS=7 .venv/bin/python bench/home_page.py

Target (issue 19): within 1.5x the 1,000-row admin changelist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import pages  # noqa: E402  (the path above first)

MAX_QUERIES = 20


def measure(images: int) -> dict[str, Any]:
    db = pages._directory() / f"pages-{images}-{pages.CUSTOMERS}-v{pages.DATA_VERSION}.sqlite3"
    done = db.with_suffix(".done")
    if not done.exists():
        db.unlink(missing_ok=True)
    pages._setup(db)
    from django.core.management import call_command

    if not done.exists():
        pages._generate(images, db)
        done.touch()
    else:
        call_command("migrate", verbosity=0)  # a kept catalogue gets the newer columns

    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.test import Client

    from catalog.models import Image
    from lifecycle import home

    admin.site._registry[Image].list_per_page = 1000  # type: ignore[misc]
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    changelist = pages.Fetch(client, "/admin/catalog/image/")
    assert client.get("/admin/catalog/image/").content.count(b'class="field-label"') == min(
        images, 1000
    )
    results = [
        pages._pair("home page", pages.Fetch(client, "/"), changelist),
        pages._pair("navigation's count", pages.Fetch(client, "/today/count/"), changelist),
    ]
    return {
        "images": images,
        "sections": home.counts() | {"janitor": len(home.janitor_findings())},
        "pages": results,
    }


def main(small: int, large: int) -> None:
    runs = [pages.run_size(small, __file__), pages.run_size(large, __file__)]
    for run in runs:
        print(f"{run['images']} images, items per section: {run['sections']}")
    print()
    print(
        f"| at {large} images | ours | admin (1,000 rows) | ratio | queries (admin) | "
        f"queries at {small} |"
    )
    print("|---|---|---|---|---|---|")
    small_rows = {row["page"]: row for row in runs[0]["pages"]}
    for row in runs[1]["pages"]:
        print(
            f"| {row['page']} | {row['ours_ms']:.0f} ms | {row['admin_ms']:.0f} ms | "
            f"{row['ratio']:.2f}x | {row['queries']} ({row['admin_queries']}) | "
            f"{small_rows[row['page']]['queries']} |"
        )
    home_queries = {run["pages"][0]["queries"] for run in runs}
    print()
    print(
        "home page queries: "
        + ("the same at both sizes" if len(home_queries) == 1 else f"differ: {home_queries}")
        + f", at most {MAX_QUERIES}: {max(home_queries) <= MAX_QUERIES}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        sizes = [int(a) for a in sys.argv[1:3]] or [100, 1000]
        main(*sizes)
