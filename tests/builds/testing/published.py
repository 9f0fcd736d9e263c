"""A version published by the product's own `builds.publish.publish` into tests/cloud's
localcloud (the timer backend: no VM), for the test-run and janitor tests that need one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from builds.models import Build
from builds.publish import publish
from catalog.models import ImageVersion, Zone
from tests.catalog.factories import os_image


def published_version(
    artefact: Path, zones: Iterable[Zone], *, build_state: str = "testing"
) -> ImageVersion:
    """debian_bookworm's version "2026-11-26" made of `artefact` (a QCOW2), published in
    `zones` by a build in `build_state`."""
    image = os_image("debian_bookworm")
    version = ImageVersion.objects.create(
        image=image, arch="x86_64", name="2026-11-26", artefact_path=str(artefact)
    )
    build = Build.objects.create(image=image, arch="x86_64", state=build_state, version=version)
    publish(
        build_id=build.pk,
        version=version,
        artefact=artefact,
        zones=zones,
        log=lambda line: None,
        progress=lambda *args, **kwargs: None,
        cancelled=lambda: False,
    )
    return version


def timer_run_version(settings, artefact: Path, zone: str, **overrides: object) -> ImageVersion:
    """A version published in `zone` (created, enabled) for test runs on the timer backend,
    whose servers never answer: a 2 s boot wait and 30 s actions, plus the `overrides`
    settings (pytest-django's `settings`)."""
    settings.TEST_BOOT_TIMEOUT_SECONDS = 2
    settings.TEST_ACTION_TIMEOUT_SECONDS = 30
    for name, value in overrides.items():
        setattr(settings, name, value)
    return published_version(artefact, [Zone.objects.create(code=zone, enabled=True)])
