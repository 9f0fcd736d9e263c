"""The OSV import against a local server: what is kept, ETag, increments, and bad input."""

from __future__ import annotations

import io
import zipfile

import pytest

from advisories import importer
from advisories.ecosystems import ecosystems_for
from advisories.models import Advisory, EcosystemImport
from catalog.choices import DeprecationBasis
from tests.advisories.conftest import deb, debian_image, version
from tests.advisories.osv_server import OsvServer, make_zip, record
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db

ECO = "Debian:12"


@pytest.fixture
def catalogue():
    image = debian_image()
    version(
        image,
        "2026-01-01",
        [
            deb("libssl3", "3.0.11-1~deb12u1", "openssl"),
            deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
        ],
    )
    return image


def _status(export: str = "Debian") -> EcosystemImport:
    return EcosystemImport.objects.get(ecosystem=export)


def test_keeps_only_records_of_manifest_packages(osv_server: OsvServer, catalogue) -> None:
    osv_server.serve(
        "Debian",
        [
            record("DSA-1-1", ECO, "openssl", "3.0.13-1~deb12u1", aliases=("CVE-2026-0001",)),
            record("DSA-2-1", ECO, "nginx", "1.22.1-9+deb12u1"),
            record("DSA-3-1", "Debian:11", "openssl", "1.1.1w-0+deb11u2"),
        ],
    )
    [result] = importer.import_all()
    assert result.ok, result.message
    [advisory] = Advisory.objects.all()
    assert (advisory.osv_id, advisory.ecosystem, advisory.package) == ("DSA-1-1", ECO, "openssl")
    assert advisory.aliases == ["CVE-2026-0001"]
    assert advisory.ranges == [[["introduced", "0"], ["fixed", "3.0.13-1~deb12u1"]]]
    assert "3 record(s) read, 1 affecting our packages (1 new, 0 updated)" in result.message
    assert _status().last_ok is True


def test_etag_then_incremental_by_modified(osv_server: OsvServer, catalogue) -> None:
    first = [
        record("DSA-1-1", ECO, "openssl", "3.0.13-1~deb12u1"),
        record("DSA-4-1", ECO, "bash", "5.2.15-2+deb12u1"),
    ]
    osv_server.serve("Debian", first, etag='"a"')
    importer.import_all()
    [again] = importer.import_all()
    assert osv_server.requests[-1] == ("/Debian/all.zip", '"a"')
    assert again.ok and "unchanged" in again.message

    changed = [
        record("DSA-1-1", ECO, "openssl", "3.0.14-1~deb12u1", modified="2026-02-01T00:00:00Z"),
        first[1],
    ]
    osv_server.serve("Debian", changed, etag='"b"')
    [third] = importer.import_all()
    assert "(0 new, 1 updated)" in third.message
    assert Advisory.objects.get(osv_id="DSA-1-1").ranges[0][1] == ["fixed", "3.0.14-1~deb12u1"]


def test_unchanged_export_is_scanned_again_for_new_packages(
    osv_server: OsvServer, catalogue
) -> None:
    osv_server.serve(
        "Debian",
        [
            record("DSA-1-1", ECO, "openssl", "3.0.13-1~deb12u1"),
            record("DSA-2-1", ECO, "nginx", "1.22.1-9+deb12u1"),
        ],
    )
    importer.import_all()
    assert not Advisory.objects.filter(package="nginx").exists()
    version(catalogue, "2026-01-02", [deb("nginx-light", "1.22.1-9", "nginx")])
    [result] = importer.import_all()
    assert osv_server.requests[-1][1] == '"v1"'  # a conditional request, answered 304
    assert "scanned again for new packages" in result.message
    assert Advisory.objects.filter(package="nginx").exists()


def test_bad_records_are_skipped_with_a_message(osv_server: OsvServer, catalogue) -> None:
    bad_version = record("DSA-5-1", ECO, "bash", "not a version!")
    osv_server.serve(
        "Debian",
        [
            b"{not json",
            {"modified": "2026-01-01T00:00:00Z", "affected": []},
            record("DSA-6-1", "Debian", "openssl", "1"),
            record("DSA-7-1", "Mystery:1", "openssl", "1"),
            bad_version,
            record("DSA-1-1", ECO, "openssl", "3.0.13-1~deb12u1"),
        ],
    )
    [result] = importer.import_all()
    assert result.ok
    assert "record problem(s) skipped" in result.message
    assert "not JSON" in result.message
    assert "no usable id" in result.message
    status = _status()
    assert set(Advisory.objects.values_list("osv_id", flat=True)) == {"DSA-1-1"}
    assert status.last_ok is True


def test_unknown_ecosystem_and_bad_version_are_named(osv_server: OsvServer, catalogue) -> None:
    osv_server.serve("Debian", [record("DSA-7-1", "Mystery:1", "openssl", "1")])
    [result] = importer.import_all()
    assert "DSA-7-1: unknown ecosystem 'Mystery:1' in the Debian export" in result.message
    osv_server.serve("Debian", [record("DSA-5-1", ECO, "bash", "not a version!")], etag='"2"')
    [result] = importer.import_all()
    assert "version 'not a version!' cannot be ordered" in result.message


def _good_import(osv_server: OsvServer) -> None:
    osv_server.serve("Debian", [record("DSA-1-1", ECO, "openssl", "3.0.13-1~deb12u1")])
    [result] = importer.import_all()
    assert result.ok


@pytest.mark.parametrize(
    ("status", "words"), [(404, "not found (HTTP 404)"), (500, "the server failed (HTTP 500")]
)
def test_http_errors_keep_the_last_good_data(osv_server, catalogue, status, words) -> None:
    _good_import(osv_server)
    osv_server.exports["/Debian/all.zip"].status = status
    osv_server.exports["/Debian/all.zip"].etag = '"new"'
    [result] = importer.import_all()
    assert not result.ok and words in result.message
    assert _status().last_ok is False and words in _status().last_message
    assert _status().last_success_at is not None
    assert Advisory.objects.filter(osv_id="DSA-1-1").exists()


def test_timeout_keeps_the_last_good_data(osv_server, catalogue, settings) -> None:
    _good_import(osv_server)
    settings.OSV_TIMEOUT = 1
    osv_server.serve("Debian", [], etag='"new"', delay=3)
    [result] = importer.import_all()
    assert not result.ok and "within 1 s" in result.message
    assert Advisory.objects.count() == 1


def test_truncated_zip(osv_server, catalogue) -> None:
    _good_import(osv_server)
    body = make_zip([record(f"DSA-9-{n}", ECO, "openssl", "9") for n in range(3)])
    osv_server.serve_bytes("Debian", body[: len(body) // 2], etag='"cut"')
    [result] = importer.import_all()
    assert not result.ok and "not a readable zip (truncated?)" in result.message
    assert list(Advisory.objects.values_list("osv_id", flat=True)) == ["DSA-1-1"]
    # The good archive kept in the cache is still the one a later re-scan reads.
    assert zipfile.is_zipfile(importer.archive_path("Debian"))


def test_zip_bomb_is_refused(osv_server, catalogue, settings) -> None:
    _good_import(osv_server)
    settings.OSV_MAX_UNCOMPRESSED_BYTES = 1_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.json", b" " * 5_000_000)
    osv_server.serve_bytes("Debian", buffer.getvalue(), etag='"bomb"')
    [result] = importer.import_all()
    assert not result.ok and "OSV_MAX_UNCOMPRESSED_BYTES" in result.message
    assert Advisory.objects.count() == 1


def test_only_allowed_hosts(osv_server, catalogue, settings) -> None:
    settings.UPSTREAM_ALLOWED_HOSTS = ["osv-vulnerabilities.storage.googleapis.com"]
    [result] = importer.import_all()
    assert not result.ok and "host not allowed: 127.0.0.1" in result.message
    assert osv_server.requests == []


def test_one_failed_export_does_not_stop_the_others(osv_server, catalogue) -> None:
    rocky = os_image("rocky_9")
    rocky.distribution, rocky.version = "Rocky Linux", "9.5"
    rocky.save()
    version(
        rocky,
        "2026-01-01",
        [{"name": "openssl-libs", "version": "1:3.0.7-25.el9", "arch": "x86_64"}],
    )
    osv_server.serve(
        "Rocky Linux", [record("RLSA-2026:1", "Rocky Linux:9", "openssl-libs", "1:3.0.7-27.el9")]
    )
    results = {r.export: r for r in importer.import_all()}
    assert not results["Debian"].ok and results["Rocky Linux"].ok
    assert Advisory.objects.get().ecosystem == "Rocky Linux:9"


@pytest.mark.parametrize(
    ("distribution", "release", "extended", "expected"),
    [
        ("Debian", "12", False, ["Debian:12"]),
        ("Ubuntu", "22.04", False, ["Ubuntu:22.04:LTS"]),
        ("Ubuntu", "22.04", True, ["Ubuntu:22.04:LTS", "Ubuntu:Pro:22.04:LTS"]),
        ("Ubuntu", "24.10", False, ["Ubuntu:24.10"]),
        ("AlmaLinux", "9.5", False, ["AlmaLinux:9"]),
        ("Rocky Linux", "9", False, ["Rocky Linux:9"]),
        ("CentOS Stream", "9", False, []),
        ("Fedora", "41", False, []),
    ],
)
def test_ecosystems_from_the_catalogue(distribution, release, extended, expected) -> None:
    image = os_image("some_image")
    image.distribution, image.version = distribution, release
    image.save()
    if extended:
        image.upstream.deprecation_basis = DeprecationBasis.EXTENDED
        image.upstream.save()
    assert ecosystems_for(image) == expected


def test_the_daily_schedule_runs_the_import_task() -> None:
    from django.utils.module_loading import import_string

    from catalog.schedules import all_schedules

    [definition] = [d for d in all_schedules() if d.name == "advisories.import_osv"]
    assert definition.schedule_type == "D"
    assert callable(import_string(definition.func))
