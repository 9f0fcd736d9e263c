"""The daily import of the distributions' OSV exports.

Per export (`Debian`, `Ubuntu`, ...): a conditional download (ETag, Last-Modified) of
`<OSV_BASE_URL>/<export>/all.zip` into the download cache, in chunks, from an allowed host
only; then a scan of the archive one record at a time, keeping only the records that affect
a package some version's manifest holds, stored by their `modified` date (a record not newer
than the stored one is not written again). An unchanged export is scanned again only when
the manifests bring package names its last scan did not look for.

A failed import (HTTP error, timeout, truncated zip, zip bomb) changes nothing stored: it is
recorded on the export's row, with why, and the other exports go on. Record-level problems
(a malformed record, an unknown ecosystem, a version the ordering cannot read) skip that
record or range and are counted in the export's message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from advisories import osv
from advisories.ecosystems import configured_exports, export_of
from advisories.matching import wanted_packages
from advisories.models import Advisory, EcosystemImport
from builds.download import CHUNK_SIZE, DownloadError, open_url
from catalog.models import Image

logger = logging.getLogger("advisories.import")

BATCH = 1000
SHOWN_PROBLEMS = 3


@dataclass
class ExportResult:
    export: str
    ok: bool
    message: str


def export_url(export: str, base_url: str | None = None) -> str:
    base = (base_url or settings.OSV_BASE_URL).rstrip("/")
    return f"{base}/{quote(export, safe='')}/all.zip"


def archive_path(export: str) -> Path:
    slug = export.lower().replace(" ", "-")
    return Path(settings.DOWNLOAD_CACHE_DIR) / "osv" / f"{slug}.zip"


def import_all(*, base_url: str | None = None) -> list[ExportResult]:
    """Import every configured export; one export's failure never stops the others."""
    images = list(Image.objects.select_related("upstream", "base_image__upstream"))
    wanted = wanted_packages(images)
    results = []
    for export in configured_exports(images):
        own = {eco: names for eco, names in wanted.items() if export_of(eco) == export}
        try:
            message = import_export(export, own, base_url=base_url)
        except (DownloadError, osv.ExportError) as exc:
            results.append(_failed(export, str(exc)))
            continue
        except Exception as exc:
            logger.exception("OSV import of %s failed unexpectedly", export)
            results.append(_failed(export, f"unexpected error: {exc}"))
            continue
        results.append(ExportResult(export, True, message))
    return results


def _failed(export: str, message: str) -> ExportResult:
    logger.error("OSV import of %s failed: %s", export, message)
    EcosystemImport.objects.update_or_create(
        ecosystem=export,
        defaults={"last_attempt_at": timezone.now(), "last_ok": False, "last_message": message},
    )
    return ExportResult(export, False, message)


def import_export(export: str, wanted: dict[str, set[str]], *, base_url: str | None = None) -> str:
    """Download (if changed) and scan one export; the message for managers.

    Raises DownloadError or ExportError with nothing stored changed."""
    row, _ = EcosystemImport.objects.get_or_create(ecosystem=export)
    final = archive_path(export)
    have_archive = final.exists()
    downloaded = _download(export, row if have_archive else None, base_url)
    if downloaded is None:
        if not _brings_new_names(row, wanted):
            message = "export unchanged since the last import; nothing new to look for"
            _succeeded(row, message)
            return message
        path, validators = final, (row.etag, row.last_modified)
    else:
        path, validators = downloaded
    summary = _scan(export, path, wanted)
    if path != final:
        os.replace(path, final)
    row.etag, row.last_modified = validators
    row.archive_path = str(final)
    row.scanned_packages = {eco: sorted(names) for eco, names in wanted.items()}
    if downloaded is None:
        summary = "export unchanged, scanned again for new packages: " + summary
    _succeeded(row, summary)
    return summary


def _brings_new_names(row: EcosystemImport, wanted: dict[str, set[str]]) -> bool:
    """Whether `wanted` names a package the export's last scan did not look for."""
    scanned = row.scanned_packages or {}
    return any(names - set(scanned.get(eco, ())) for eco, names in wanted.items())


def rescan_for_new_packages(image: Image) -> list[str]:
    """Scan the kept archive of each export `image` is matched in again, without a download,
    when its versions' manifests name packages that archive's last scan did not look for (a
    new version brought them): an import by `modified` date would never fetch their records
    again. What is looked for is every version's names, as the daily import does. An export
    never imported (no archive kept) is left to the daily run. Returns one message per export
    scanned; raises as the scan does (an ExportError for a broken archive)."""
    mine = wanted_packages([image])
    everyone: dict[str, set[str]] | None = None
    messages = []
    for export in sorted({export_of(eco) for eco in mine}):
        row = EcosystemImport.objects.filter(ecosystem=export).first()
        final = archive_path(export)
        own = {eco: names for eco, names in mine.items() if export_of(eco) == export}
        if row is None or not final.exists() or not _brings_new_names(row, own):
            continue
        everyone = wanted_packages() if everyone is None else everyone
        wanted = {eco: names for eco, names in everyone.items() if export_of(eco) == export}
        summary = _scan(export, final, wanted)
        row.scanned_packages = {eco: sorted(names) for eco, names in wanted.items()}
        row.save(update_fields=["scanned_packages"])
        message = f"{export}: kept export scanned again for new packages: {summary}"
        logger.info("OSV import of %s", message)
        messages.append(message)
    return messages


def _succeeded(row: EcosystemImport, message: str) -> None:
    now = timezone.now()
    row.last_attempt_at = row.last_success_at = now
    row.last_ok = True
    row.last_message = message
    row.save()
    logger.info("OSV import of %s: %s", row.ecosystem, message)


def _download(
    export: str, row: EcosystemImport | None, base_url: str | None
) -> tuple[Path, tuple[str, str]] | None:
    """The export downloaded to a partial file and its validators, or None when the server
    says it has not changed since `row`'s validators (304)."""
    url = export_url(export, base_url)
    headers = {}
    if row is not None and row.etag:
        headers["If-None-Match"] = row.etag
    if row is not None and row.last_modified:
        headers["If-Modified-Since"] = row.last_modified
    response = open_url(
        url,
        allowed_hosts=settings.UPSTREAM_ALLOWED_HOSTS,
        headers=headers,
        timeout=settings.OSV_TIMEOUT,
    )
    partial = archive_path(export).with_suffix(".zip.partial")
    try:
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            raise DownloadError(f"unexpected HTTP {response.status_code} from {url}")
        partial.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        limit = settings.OSV_MAX_DOWNLOAD_BYTES
        with open(partial, "wb") as out:
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > limit:
                    raise DownloadError(
                        f"{url} is larger than {limit:,} bytes (OSV_MAX_DOWNLOAD_BYTES)"
                    )
                out.write(chunk)
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"the download of {url} broke off: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        response.close()
    validators = (
        response.headers.get("ETag", "")[:255],
        response.headers.get("Last-Modified", "")[:64],
    )
    return partial, validators


def _scan(export: str, path: Path, wanted: dict[str, set[str]]) -> str:
    """Store the wanted advisories of one archive, all or nothing; a summary in words."""
    existing = {
        (osv_id, ecosystem, package): (pk, modified)
        for pk, osv_id, ecosystem, package, modified in Advisory.objects.filter(
            ecosystem__in=list(wanted)
        ).values_list("id", "osv_id", "ecosystem", "package", "modified")
    }
    records = kept = created = updated = 0
    problems: list[str] = []
    problem_count = 0
    to_create: list[Advisory] = []
    to_update: list[Advisory] = []

    def wants(ecosystem: str, package: str) -> bool:
        return package in wanted.get(ecosystem, ())

    try:
        with transaction.atomic():
            for result in osv.read_export(
                path,
                export=export,
                wanted=wants,
                max_total_bytes=settings.OSV_MAX_UNCOMPRESSED_BYTES,
                max_record_bytes=settings.OSV_MAX_RECORD_BYTES,
            ):
                records += 1
                if result.problems:
                    problem_count += len(result.problems)
                    problems.extend(result.problems[: SHOWN_PROBLEMS - len(problems)])
                for package in result.packages:
                    kept += 1
                    key = (package.osv_id, package.ecosystem, package.package)
                    stored = existing.get(key)
                    if stored is not None and (stored[0] == 0 or stored[1] >= package.modified):
                        continue
                    advisory = _advisory(package)
                    if stored is None:
                        to_create.append(advisory)
                        existing[key] = (0, package.modified)
                    else:
                        advisory.pk = stored[0]
                        to_update.append(advisory)
                        existing[key] = (stored[0], package.modified)
                if len(to_create) >= BATCH:
                    created += _flush_create(to_create)
                if len(to_update) >= BATCH:
                    updated += _flush_update(to_update)
            created += _flush_create(to_create)
            updated += _flush_update(to_update)
    except BaseException:
        if path != archive_path(export):
            path.unlink(missing_ok=True)
        raise
    summary = (
        f"{records:,} record(s) read, {kept:,} affecting our packages "
        f"({created:,} new, {updated:,} updated)"
    )
    if problem_count:
        summary += f"; {problem_count:,} record problem(s) skipped, e.g. " + "; ".join(problems)
        for problem in problems:
            logger.warning("OSV import of %s: %s", export, problem)
    return summary


_FIELDS = ["aliases", "severity", "summary", "published", "modified", "ranges", "versions"]


def _advisory(package: osv.AffectedPackage) -> Advisory:
    return Advisory(
        osv_id=package.osv_id,
        ecosystem=package.ecosystem,
        package=package.package,
        aliases=list(package.aliases),
        severity=package.severity,
        summary=package.summary,
        published=package.published,
        modified=package.modified,
        ranges=[[list(event) for event in events] for events in package.ranges],
        versions=list(package.versions),
    )


def _flush_create(rows: list[Advisory]) -> int:
    count = len(rows)
    Advisory.objects.bulk_create(rows, batch_size=500)
    rows.clear()
    return count


def _flush_update(rows: list[Advisory]) -> int:
    count = len(rows)
    Advisory.objects.bulk_update(rows, _FIELDS, batch_size=500)
    rows.clear()
    return count


def statuses(exports: Iterable[str] | None = None) -> list[EcosystemImport]:
    rows = EcosystemImport.objects.all()
    return list(rows.filter(ecosystem__in=list(exports)) if exports is not None else rows)
