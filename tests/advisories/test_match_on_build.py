"""A version a build records is matched against the stored advisories at once, not by the
next daily run: the finalize stage (run for real on a small QCOW2 overlay) records the
version with the customize stage's manifest, the advisories app queues its matching (the
real django-q2 ORM queue), and once that task has run the version's exposures are stored,
including those of packages the kept export was never scanned for (scanned again, without a
download). The daily task is never called after the first import. A matching that cannot be
done never fails the build."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import TestCase
from django_q.models import OrmQ

from advisories import importer, tasks
from advisories.models import EcosystemImport, Exposure, VersionCoverage
from builds.choices import BuildState, StageName
from builds.models import Build, Stage
from builds.signals import version_recorded
from builds.stages import finalize
from builds.stages.context import StageContext
from catalog.models import Image, ImageVersion
from tests.advisories.conftest import deb, debian_image, version
from tests.advisories.osv_server import OsvServer, record
from tests.lifecycle import run_queued

pytestmark = pytest.mark.django_db

OPENSSL = record("DSA-10-1", "Debian:12", "openssl", "3.0.15-1~deb12u1")
BASH = record("DSA-11-1", "Debian:12", "bash", "5.2.15-3")
BUILT = [
    deb("libssl3", "3.0.11-1~deb12u1", "openssl"),
    deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
]


@pytest.fixture
def image(osv_server: OsvServer, settings, tmp_path: Path) -> Image:
    """A Debian image whose one earlier version holds openssl alone, after one daily import
    of an export that also holds a bash advisory (not kept: no version had bash yet)."""
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    image = debian_image()
    version(image, "2027-03-01", [deb("libssl3", "3.0.15-1~deb12u1", "openssl")])
    osv_server.serve("Debian", [OPENSSL, BASH])
    tasks.import_osv_task()
    assert not Exposure.objects.exists()
    assert EcosystemImport.objects.get().scanned_packages == {"Debian:12": ["openssl"]}
    return image


def overlay(tmp_path: Path) -> Path:
    """What the customize stage leaves: a qcow2 overlay over a small base image."""
    base, top = tmp_path / "base.qcow2", tmp_path / "work.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(top)],
        check=True,
    )
    return top


def finalize_build(image: Image, tmp_path: Path, manifest: list[dict[str, Any]]) -> ImageVersion:
    """Run the finalize stage of a build whose customize stage recorded `manifest`, as the
    pipeline runs it (its on-commit callbacks included); the version it recorded."""
    build = Build.objects.create(image=image, arch="x86_64", state=BuildState.FINALIZING)
    Stage.objects.create(build=build, name=StageName.FETCH, outputs={})
    Stage.objects.create(
        build=build,
        name=StageName.CUSTOMIZE,
        outputs={"work_path": str(overlay(tmp_path)), "manifest": manifest, "recipe": []},
    )
    stage = Stage.objects.create(build=build, name=StageName.FINALIZE)
    with TestCase.captureOnCommitCallbacks(execute=True):
        outputs = finalize.run(StageContext(build, stage, "worker-1"))
    return ImageVersion.objects.get(pk=outputs["version_id"])


def test_a_recorded_version_is_matched_by_its_queued_task_new_packages_included(
    image: Image, osv_server: OsvServer, tmp_path: Path, client, viewer
) -> None:
    downloads = len(osv_server.requests)
    built = finalize_build(image, tmp_path, BUILT)
    assert built.manifest == BUILT
    client.force_login(viewer)
    assert (
        "not matched against the advisories yet"
        in client.get(built.get_absolute_url()).content.decode()
    )

    [queued] = [q.task for q in OrmQ.objects.all()]
    assert queued["func"] == tasks.MATCH_VERSION_TASK and queued["args"] == (built.pk,)
    [said] = run_queued(tasks.MATCH_VERSION_TASK)

    found = sorted(
        (e.advisory.osv_id, e.package, e.installed_version, e.fixed_version)
        for e in Exposure.objects.filter(version=built).select_related("advisory")
    )
    assert found == [
        ("DSA-10-1", "libssl3", "3.0.11-1~deb12u1", "3.0.15-1~deb12u1"),
        # bash's record came from the kept export, scanned again for the new package.
        ("DSA-11-1", "bash", "5.2.15-2", "5.2.15-3"),
    ]
    assert said.startswith(f"version {built.pk}: matched, 2 exposure(s); Debian: kept export")
    assert len(osv_server.requests) == downloads  # nothing downloaded again
    assert EcosystemImport.objects.get().scanned_packages == {"Debian:12": ["bash", "openssl"]}
    assert VersionCoverage.objects.get(version=built).status == "covered"
    page = client.get(built.get_absolute_url()).content.decode()
    assert "not matched against the advisories yet" not in page
    assert "DSA-11-1" in page and "DSA-10-1" in page
    assert not OrmQ.objects.exists()


def test_a_version_of_known_packages_is_matched_without_scanning_the_export_again(
    image: Image, tmp_path: Path
) -> None:
    scanned_before = EcosystemImport.objects.get().scanned_packages
    built = finalize_build(image, tmp_path, BUILT[:1])
    [said] = run_queued(tasks.MATCH_VERSION_TASK)
    assert said == f"version {built.pk}: matched, 1 exposure(s)"
    assert EcosystemImport.objects.get().scanned_packages == scanned_before
    assert [e.package for e in Exposure.objects.filter(version=built)] == ["libssl3"]


def test_a_broken_kept_export_is_logged_and_the_version_matched_with_what_is_stored(
    image: Image, tmp_path: Path, caplog
) -> None:
    importer.archive_path("Debian").write_bytes(b"PK\x03\x04 not a zip any more")
    built = finalize_build(image, tmp_path, BUILT)
    assert Build.objects.get(version=built).version_id == built.pk
    with caplog.at_level(logging.ERROR, logger="advisories.match"):
        [said] = run_queued(tasks.MATCH_VERSION_TASK)
    assert "could not be scanned again" in said and "the daily run retries" in said
    assert "scanning the kept exports for version" in caplog.text
    # Matched with the stored advisories; bash's is not stored yet.
    assert [e.package for e in Exposure.objects.filter(version=built)] == ["libssl3"]
    # Not marked scanned: the daily run scans it for bash again.
    assert EcosystemImport.objects.get().scanned_packages == {"Debian:12": ["openssl"]}


def test_a_listener_that_fails_never_fails_the_build(image: Image, tmp_path: Path, caplog) -> None:
    def broken(sender: Any, version: ImageVersion, **kwargs: Any) -> None:
        raise RuntimeError("listener down")

    version_recorded.connect(broken, dispatch_uid="test.broken")
    try:
        with caplog.at_level(logging.ERROR, logger="builds.stages.finalize"):
            built = finalize_build(image, tmp_path, BUILT)
    finally:
        version_recorded.disconnect(dispatch_uid="test.broken")
    assert built.manifest == BUILT
    assert "a listener of version_recorded failed" in caplog.text
