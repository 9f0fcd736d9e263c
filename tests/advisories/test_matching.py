"""Matching advisories to manifests, by the distributions' own orderings, and the pages."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from advisories import matching
from advisories.matching import affected
from advisories.models import Advisory, Exposure
from catalog.choices import VersionState
from lifecycle.models import Release
from tests.advisories.conftest import deb, debian_image, version
from tests.catalog.factories import os_image


@pytest.mark.parametrize(
    ("scheme", "installed", "events", "expected"),
    [
        (
            "dpkg",
            "3.0.11-1~deb12u1",
            [("introduced", "0"), ("fixed", "3.0.11-1~deb12u2")],
            (True, "3.0.11-1~deb12u2"),
        ),
        (
            "dpkg",
            "3.0.11-1~deb12u2",
            [("introduced", "0"), ("fixed", "3.0.11-1~deb12u2")],
            (False, ""),
        ),
        # `~` sorts before the release it precedes.
        ("dpkg", "3.0.11-1", [("introduced", "0"), ("fixed", "3.0.11-1~deb12u2")], (False, "")),
        # An epoch outweighs everything after it.
        ("dpkg", "1:1.0-1", [("introduced", "0"), ("fixed", "2:0.9-1")], (True, "2:0.9-1")),
        ("dpkg", "2:1.0-1", [("introduced", "0"), ("fixed", "2:0.9-1")], (False, "")),
        ("dpkg", "1.0-1", [("introduced", "1.1-1"), ("fixed", "1.2-1")], (False, "")),
        ("dpkg", "1.5-1", [("introduced", "0")], (True, "")),
        ("dpkg", "1.5-1", [("introduced", "0"), ("last_affected", "1.5-1")], (True, "")),
        (
            "rpm",
            "3.0.7-25.el9",
            [("introduced", "0"), ("fixed", "3.0.7-27.el9")],
            (True, "3.0.7-27.el9"),
        ),
        ("rpm", "3.0.7-28.el9", [("introduced", "0"), ("fixed", "3.0.7-27.el9")], (False, "")),
        ("rpm", "1:3.0.7-25.el9", [("introduced", "0"), ("fixed", "3.0.7-27.el9")], (False, "")),
    ],
)
def test_ranges_by_the_distribution_ordering(scheme, installed, events, expected) -> None:
    assert affected(scheme, installed, [events], []) == expected


def _advisory(
    osv_id: str, package: str, fixed: str | None, eco: str = "Debian:12", **extra
) -> Advisory:
    events = [["introduced", "0"]] + ([["fixed", fixed]] if fixed else [])
    return Advisory.objects.create(
        osv_id=osv_id,
        ecosystem=eco,
        package=package,
        ranges=[events],
        modified="2026-01-10T00:00:00Z",
        **extra,
    )


@pytest.mark.django_db
def test_source_packages_matched_and_unknown_without_source(client, viewer) -> None:
    image = debian_image()
    known = version(
        image,
        "2026-01-02",
        [
            deb("libssl3", "3.0.11-1~deb12u1", "openssl"),
            deb("openssl", "3.0.11-1~deb12u1", "openssl"),
            deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
        ],
    )
    old = version(image, "2026-01-01", [deb("libssl3", "3.0.11-1~deb12u1")])
    _advisory("DSA-1-1", "openssl", "3.0.13-1~deb12u1", severity="high", aliases=["CVE-2026-1"])
    _advisory("DSA-2-1", "bash", None)
    _advisory("DSA-3-1", "bash", "5.2.15-1")  # fixed before what is installed
    matching.match_all()

    rows = set(
        Exposure.objects.filter(version=known).values_list(
            "advisory__osv_id", "package", "fixed_version"
        )
    )
    assert rows == {
        ("DSA-1-1", "libssl3", "3.0.13-1~deb12u1"),
        ("DSA-1-1", "openssl", "3.0.13-1~deb12u1"),
        ("DSA-2-1", "bash", ""),
    }
    assert not Exposure.objects.filter(version=old).exists()

    client.force_login(viewer)
    page = client.get(known.get_absolute_url()).content.decode()
    assert "3 exposures, 2 with a fix available" in page
    assert "no fix yet" in page and "CVE-2026-1" in page
    unknown = client.get(old.get_absolute_url()).content.decode()
    assert "Unknown: the manifest holds no source package names" in unknown
    assert "No known exposure" not in unknown


@pytest.mark.django_db
def test_rpm_binary_names_and_not_covered(client, viewer) -> None:
    rocky = os_image("rocky_9")
    rocky.distribution, rocky.version = "Rocky Linux", "9"
    rocky.save()
    v = version(
        rocky,
        "2026-01-01",
        [
            {"name": "openssl-libs", "version": "1:3.0.7-25.el9", "arch": "x86_64"},
            {"name": "docker-ce", "version": "3:27.0.1-1.el9", "arch": "x86_64"},
        ],
    )
    _advisory("RLSA-2026:1", "openssl-libs", "1:3.0.7-27.el9", eco="Rocky Linux:9")
    _advisory("RLSA-2026:2", "docker-ce", "3:28.0.0-1.el9", eco="Rocky Linux:9")
    fedora = os_image("fedora_41")
    fedora.distribution, fedora.version = "Fedora", "41"
    fedora.save()
    f = version(
        fedora,
        "2026-01-01",
        [{"name": "openssl-libs", "version": "3.2.2-1.fc41", "arch": "x86_64"}],
    )
    matching.match_all()
    assert list(Exposure.objects.values_list("version", "advisory__osv_id")) == [
        (v.pk, "RLSA-2026:1")
    ]
    client.force_login(viewer)
    page = client.get(v.get_absolute_url()).content.decode()
    assert "Not covered (from other repositories): docker-ce" in page
    assert "Not covered: no OSV ecosystem" in client.get(f.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_first_seen_is_kept_and_fixed_exposures_go(client) -> None:
    image = debian_image()
    v = version(image, "2026-01-02", [deb("libssl3", "3.0.11-1~deb12u1", "openssl")])
    advisory = _advisory("DSA-1-1", "openssl", "3.0.13-1~deb12u1")
    matching.match_all()
    first = Exposure.objects.get().first_seen
    matching.match_all()
    assert Exposure.objects.get().first_seen == first
    advisory.ranges = [[["introduced", "0"], ["fixed", "3.0.10-1"]]]
    advisory.save()
    matching.match_all()
    assert not Exposure.objects.filter(version=v).exists()


@pytest.mark.django_db
def test_pages_cost_the_same_queries_whatever_the_exposures(client, viewer) -> None:
    image = debian_image()
    manifest = [deb(f"lib{n}", "1.0-1", f"src{n}") for n in range(30)]
    v = version(image, "2026-01-02", manifest)
    _advisory("DSA-0-1", "src0", "1.0-2")
    matching.match_all()
    client.force_login(viewer)

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    image_url = reverse("catalog:image", args=[image.label])
    few_version, few_image = queries(v.get_absolute_url()), queries(image_url)
    for n in range(1, 30):
        _advisory(f"DSA-{n}-1", f"src{n}", "1.0-2")
    matching.match_all()
    assert Exposure.objects.count() == 30
    assert queries(v.get_absolute_url()) == few_version
    assert queries(image_url) == few_image


@pytest.mark.django_db
def test_the_feed_carries_each_current_version_s_exposure(client, viewer) -> None:
    image = debian_image()
    v = version(image, "2026-01-02", [deb("libssl3", "3.0.11-1~deb12u1", "openssl")])
    Release.objects.create(version=v, released_at=v.created_at)
    v.state, v.released_at = VersionState.RELEASED, v.created_at
    v.save()
    client.force_login(viewer)
    url = reverse("lifecycle:feed")

    def security() -> dict:
        [entry] = client.get(url).json()["images"]
        return entry["security"]

    first = client.get(url)["ETag"]
    [row] = security()["current"]
    assert row["status"] == "unknown" and row["exposures"] is None  # not matched yet
    _advisory("DSA-1-1", "openssl", "3.0.13-1~deb12u1")
    matching.match_all()
    assert client.get(url)["ETag"] != first
    assert security() == {
        "current": [
            {
                "arch": v.arch,
                "version": v.name,
                "status": "covered",
                "exposures": 1,
                "fixable": 1,
                "fixable_advisories": ["DSA-1-1"],
            }
        ],
        "fixable_exposure_since": Exposure.objects.get().first_seen.date().isoformat(),
    }


@pytest.mark.django_db
def test_a_version_not_matched_yet_is_unknown_not_clean(client, viewer) -> None:
    image = debian_image()
    v = version(image, "2026-01-02", [deb("libssl3", "3.0.11-1~deb12u1", "openssl")])
    client.force_login(viewer)
    page = client.get(v.get_absolute_url()).content.decode()
    assert "Unknown: not matched against the advisories yet" in page
    matching.match_all()
    assert "No known exposure." in client.get(v.get_absolute_url()).content.decode()
