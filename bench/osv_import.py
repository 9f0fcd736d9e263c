"""OSV import and matching at the issue's scale, against a plain parse-and-insert baseline.

Data (built by this script, in the OSV schema's shape): one export of RECORDS records for
`Debian:12`, a tenth of them naming a source package that the manifests hold (most of those
fixed before any installed version, as most advisories of a release are); VERSIONS versions
of one image, each with PACKAGES binary packages from as many source packages, at most 20
distinct installed versions per package.

Ours: `advisories.importer.import_all()` downloading the zip from a local HTTP server into
the download cache, reading it one record at a time and storing what affects our packages,
then `advisories.matching.match_all()` storing every version's exposures.
Baseline, in the same run: `json.loads` of every record of the same zip (read from disk) and
a `bulk_create` of the same advisory and exposure rows. The baseline runs once before and
once after ours; their mean is the baseline. Prints the ratio (target <= 2x) and the
process's peak memory (target <= 300 MB; ru_maxrss, setup included).

    .venv/bin/python bench/osv_import.py [records] [versions] [packages]
    # default 100000 1000 500
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECO = "Debian:12"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def installed_version(version_index: int, package: int) -> str:
    return f"1.{(version_index + package) % 20}-1"


def write_export(path: Path, records: int, packages: int) -> int:
    """The zip of `records` records; returns how many name a manifest package."""
    rng = random.Random(17)
    touching = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n in range(records):
            if n % 10 == 0:
                touching += 1
                package = f"src{(n // 10) % packages}"
                # Most advisories of a release are fixed before what is installed.
                fixed = f"1.{rng.randrange(20)}-1" if rng.random() < 0.1 else "0.9-1"
            else:
                package, fixed = f"other{n}", "1.0-1"
            record = {
                "schema_version": "1.6.0",
                "id": f"DEBIAN-CVE-2026-{n:06d}",
                "aliases": [f"CVE-2026-{n:06d}"],
                "modified": "2026-06-01T00:00:00Z",
                "published": "2026-05-01T00:00:00Z",
                "summary": f"{package}: a benchmark vulnerability",
                "affected": [
                    {
                        "package": {
                            "ecosystem": ECO,
                            "name": package,
                            "purl": f"pkg:deb/debian/{package}?arch=source",
                        },
                        "ranges": [
                            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                        ],
                    }
                ],
            }
            archive.writestr(f"DEBIAN-CVE-2026-{n:06d}.json", json.dumps(record))
    return touching


def main(records: int, versions: int, packages: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-osv-"))
    exports = tmp / "exports"
    (exports / "Debian").mkdir(parents=True)
    os.environ.update(
        SQLITE_PATH=str(tmp / "bench.sqlite3"),
        DJANGO_SECRET_KEY="bench-key",
        FACTORY_LOCAL="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="WARNING",
        DOWNLOAD_CACHE_DIR=str(tmp / "cache"),
        UPSTREAM_EXTRA_ALLOWED_HOSTS="127.0.0.1",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from advisories import importer, matching, osv
    from advisories.models import Advisory, EcosystemImport, Exposure, VersionCoverage
    from catalog.models import Category, Image, ImageVersion

    call_command("migrate", verbosity=0)
    zip_path = exports / "Debian" / "all.zip"
    started = time.perf_counter()
    touching = write_export(zip_path, records, packages)
    print(
        f"{records:,} records ({touching:,} naming a manifest package), zip "
        f"{zip_path.stat().st_size / 1e6:.1f} MB, written in {time.perf_counter() - started:.1f} s"
    )
    image = Image.objects.create(
        label="debian_bookworm",
        name="Debian 12",
        distribution="Debian",
        version="12",
        architectures=["x86_64"],
        category=Category.objects.create(name="Distributions"),
    )
    for start in range(0, versions, 100):
        ImageVersion.objects.bulk_create(
            ImageVersion(
                image=image,
                name=f"v{v:05d}",
                manifest=[
                    {
                        "name": f"bin{p}",
                        "version": installed_version(v, p),
                        "arch": "amd64",
                        "source": f"src{p}",
                        "source_version": installed_version(v, p),
                    }
                    for p in range(packages)
                ],
            )
            for v in range(start, min(versions, start + 100))
        )
    print(
        f"{versions:,} versions of {packages} packages; peak memory after setup: {peak_mb():.0f} MB"
    )

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(exports))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.OSV_BASE_URL = f"http://127.0.0.1:{server.server_address[1]}"

    def clear() -> None:
        Exposure.objects.all().delete()
        VersionCoverage.objects.all().delete()
        Advisory.objects.all().delete()
        EcosystemImport.objects.all().delete()

    wanted = {f"src{p}" for p in range(packages)}
    exposure_rows: list[tuple[str, int, str, str, str]] = []

    def baseline() -> float:
        """json.loads of every record, bulk_create of the same advisory and exposure rows."""
        clear()
        began = time.perf_counter()
        rows = []
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                data = json.loads(archive.read(info))
                affected = data["affected"][0]
                if affected["package"]["name"] in wanted:
                    rows.append(
                        Advisory(
                            osv_id=data["id"],
                            ecosystem=ECO,
                            package=affected["package"]["name"],
                            aliases=data["aliases"],
                            summary=data["summary"],
                            published=osv.parse_time(data["published"]),
                            modified=osv.parse_time(data["modified"]),
                            ranges=[
                                [next(iter(e.items())) for e in affected["ranges"][0]["events"]]
                            ],
                        )
                    )
        Advisory.objects.bulk_create(rows, batch_size=500)
        ids = dict(Advisory.objects.values_list("osv_id", "id"))
        version_ids = dict(ImageVersion.objects.values_list("name", "id"))
        batch = []
        for osv_id, version_name, package, installed, fixed in exposure_rows:
            batch.append(
                Exposure(
                    version_id=version_ids[version_name],
                    advisory_id=ids[osv_id],
                    package=package,
                    installed_version=installed,
                    fixed_version=fixed,
                )
            )
            if len(batch) >= 5000:
                Exposure.objects.bulk_create(batch, batch_size=500)
                batch.clear()
        Exposure.objects.bulk_create(batch, batch_size=500)
        return time.perf_counter() - began

    def ours() -> tuple[float, float]:
        clear()
        began = time.perf_counter()
        [result] = importer.import_all()
        assert result.ok, result.message
        imported = time.perf_counter() - began
        matching.match_all()
        return imported, time.perf_counter() - began

    # Our run first once, to learn the exposure rows the baseline inserts too.
    first_import, first_total = ours()
    exposure_rows.extend(
        Exposure.objects.values_list(
            "advisory__osv_id", "version__name", "package", "installed_version", "fixed_version"
        ).iterator(chunk_size=5000)
    )
    exposures = len(exposure_rows)
    print(
        f"warm-up run: import {first_import:.1f} s, import+match {first_total:.1f} s, "
        f"{Advisory.objects.count():,} advisories, {exposures:,} exposures"
    )
    before = baseline()
    imported, total = ours()
    after = baseline()
    base = (before + after) / 2
    print(f"baseline (json.loads + bulk_create): {before:.1f} s before, {after:.1f} s after")
    print(f"ours: import {imported:.1f} s, import+match {total:.1f} s")
    print(f"ratio: {total / base:.2f}x the baseline (target <= 2x)")
    print(f"peak memory (process, setup included): {peak_mb():.0f} MB (target <= 300 MB)")
    server.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    defaults = [100_000, 1_000, 500]
    main(*(args + defaults[len(args) :]))
