"""Package versions order as dpkg and rpm order them, not as strings do."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from lifecycle import versions
from lifecycle.versions import Scheme, compare_dpkg, compare_rpm, scheme_for, sort_key

# (older, newer) pairs.
DPKG_ORDERED = [
    ("1.0~rc1", "1.0"),
    ("1.0~~", "1.0~"),
    ("1.0~rc1", "1.0~rc2"),
    ("2.0", "1:0.9"),
    ("2.36-9+deb12u4", "2.36-9+deb12u14"),
    ("1.0a", "1.0+"),
    ("1.0", "1.0a"),
    ("1.9", "1.10"),
    ("3.0.13-1~deb12u1", "3.0.13-1"),
    ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1"),
    ("2.9", "2.10-1"),
    ("1.2.3-1ubuntu1", "1.2.3-1ubuntu1.1"),
    ("1.0-1", "1.0-1+b1"),
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
]
DPKG_EQUAL = [("1.0", "1.0-0"), ("0:1.0", "1.0"), ("1.01", "1.1")]

RPM_ORDERED = [
    ("1.0~rc1", "1.0"),
    ("1.0", "1.0^post"),
    ("1.0^post", "1.0.1"),
    ("1.0~rc1", "1.0^"),
    ("2.34-60.el9", "2.34-100.el9"),
    ("2.34-100.el9", "2.34-100.el9_5.1"),
    ("1.9", "1.10"),
    ("1.a", "1.1"),
    ("1.0", "1.0.1"),
    ("9.9", "1:0.1"),
    ("3.0.7-27.el9", "3.0.7-28.el9"),
    ("1.0a", "1.0b"),
]
RPM_EQUAL = [("1.0", "1.0"), ("1.0", "1_0"), ("1.001", "1.1"), ("2.34", "2.34-60.el9")]


@pytest.mark.parametrize(("older", "newer"), DPKG_ORDERED)
def test_dpkg_orders_the_older_version_first(older: str, newer: str) -> None:
    assert compare_dpkg(older, newer) < 0
    assert compare_dpkg(newer, older) > 0


@pytest.mark.parametrize(("a", "b"), DPKG_EQUAL)
def test_dpkg_treats_equivalent_spellings_as_equal(a: str, b: str) -> None:
    assert compare_dpkg(a, b) == 0


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@pytest.mark.parametrize(("older", "newer"), DPKG_ORDERED)
def test_dpkg_itself_agrees_with_our_ordering(older: str, newer: str) -> None:
    done = subprocess.run(["dpkg", "--compare-versions", older, "lt", newer], check=False)
    assert done.returncode == 0


@pytest.mark.parametrize(("older", "newer"), RPM_ORDERED)
def test_rpm_orders_the_older_version_first(older: str, newer: str) -> None:
    assert compare_rpm(older, newer) < 0
    assert compare_rpm(newer, older) > 0


@pytest.mark.parametrize(("a", "b"), RPM_EQUAL)
def test_rpm_treats_equivalent_spellings_as_equal(a: str, b: str) -> None:
    assert compare_rpm(a, b) == 0


def test_string_order_would_get_these_wrong_but_the_sort_key_does_not() -> None:
    found = ["2.36-9+deb12u14", "2.36-9+deb12u4", "1:0.9", "2.36-9+deb12u4~1"]
    assert sorted(found, key=sort_key(Scheme.DPKG)) == [
        "2.36-9+deb12u4~1",
        "2.36-9+deb12u4",
        "2.36-9+deb12u14",
        "1:0.9",
    ]
    assert sorted(["2.34-100.el9", "2.34-60.el9"], key=sort_key(Scheme.RPM)) == [
        "2.34-60.el9",
        "2.34-100.el9",
    ]


@pytest.mark.parametrize(
    ("distribution", "scheme"),
    [
        ("Debian", Scheme.DPKG),
        ("ubuntu", Scheme.DPKG),
        ("Rocky Linux", Scheme.RPM),
        ("AlmaLinux", Scheme.RPM),
        ("CentOS Stream", Scheme.RPM),
        ("Fedora", Scheme.RPM),
        ("Plan 9", None),
        ("", None),
    ],
)
def test_each_distribution_uses_its_package_managers_ordering(distribution, scheme) -> None:
    assert scheme_for(distribution) == scheme


@pytest.mark.parametrize("scheme", ["dpkg", "rpm"])
@pytest.mark.parametrize("odd", ["²:1.0", "\u0661:1.0", "\U0001d7d9:1.0"])
def test_a_non_ascii_digit_before_a_colon_is_no_epoch_and_compares_without_error(
    scheme: str, odd: str
) -> None:
    # "²".isdigit() is true and int("²") raises: a manifest holding it broke every advisory.
    assert versions.compare(scheme, odd, "1:0.1") < 0  # no epoch: 0 < 1
    assert not versions.is_valid_version(odd)


@pytest.mark.parametrize(
    "value", ["2.36-9+deb12u10", "1:2.36-9", "2.34-100.el9", "1.0~rc1", "1.0^git1", "7.88.1_p1"]
)
def test_ordinary_versions_are_valid(value: str) -> None:
    assert versions.is_valid_version(value)
