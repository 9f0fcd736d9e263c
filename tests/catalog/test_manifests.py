"""Differences between two package manifests."""

from __future__ import annotations

from catalog.manifests import diff_manifests


def pkg(name: str, version: str, arch: str = "amd64") -> dict:
    return {"name": name, "version": version, "arch": arch}


def test_it_lists_added_removed_and_changed_packages_sorted_by_name() -> None:
    old = [pkg("curl", "7.88.1-10"), pkg("bash", "5.2.15-2"), pkg("vim", "2:9.0.1378-2")]
    new = [
        pkg("zsh", "5.9-4"),
        pkg("bash", "5.2.15-2+b1"),
        pkg("curl", "7.88.1-10"),
        pkg("at", "1"),
    ]
    diff = diff_manifests(old, new)
    assert diff.added == [pkg("at", "1"), pkg("zsh", "5.9-4")]
    assert diff.removed == [pkg("vim", "2:9.0.1378-2")]
    assert diff.changed == [("bash", "5.2.15-2", "5.2.15-2+b1")]
    assert not diff.empty


def test_identical_manifests_make_an_empty_diff() -> None:
    manifest = [pkg("bash", "5.2.15-2"), pkg("curl", "7.88.1-10")]
    diff = diff_manifests(manifest, list(reversed(manifest)))
    assert diff.empty
    assert (diff.added, diff.removed, diff.changed) == ([], [], [])


def test_a_package_installed_for_two_architectures_is_tracked_per_architecture() -> None:
    old = [pkg("libc6", "2.36-9", "amd64")]
    new = [pkg("libc6", "2.36-9+deb12u1", "amd64"), pkg("libc6", "2.36-9+deb12u1", "i386")]
    diff = diff_manifests(old, new)
    assert diff.added == [pkg("libc6", "2.36-9+deb12u1", "i386")]
    assert diff.removed == []
    assert diff.changed == [("libc6:amd64", "2.36-9", "2.36-9+deb12u1")]


def test_empty_manifests_compare_cleanly() -> None:
    assert diff_manifests([], []).empty
    assert diff_manifests([], [pkg("a", "1")]).added == [pkg("a", "1")]
