"""One item of every kind the home page lists, made as the product's rows record them; shared
by the home page's tests and its browser test."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from builds.choices import BuildState, CheckState, TestRunState
from builds.models import Build, CheckResult, JanitorRun, TestRun
from catalog.choices import ImageState, LocalImageState, VersionState
from catalog.models import Image, ImageVersion, LocalImage, UpstreamLifecycle, Zone
from lifecycle.models import (
    CheckOutcome,
    Customer,
    ImageRequest,
    Notice,
    NoticeState,
    Requester,
    UpstreamCheck,
)
from tests.catalog.factories import os_image


@dataclass
class Seeded:
    failed_build: Build
    failed_run: TestRun
    stale: Image
    deprecated: Image
    eol: UpstreamLifecycle
    serial: Image
    request: ImageRequest


def _version(
    image: Image, name: str, *, days_ago: int, released: bool, serial: str = ""
) -> ImageVersion:
    """A version; a released one is available in every enabled zone."""
    at = timezone.now() - dt.timedelta(days=days_ago)
    version = ImageVersion.objects.create(
        image=image,
        name=name,
        created_at=at,
        released_at=at if released else None,
        state=VersionState.RELEASED if released else VersionState.BUILT,
        upstream_serial=serial,
    )
    if released:
        for zone in Zone.objects.filter(enabled=True):
            for kind in image.storage_types:
                LocalImage.objects.create(
                    version=version, zone=zone, storage_type=kind, state=LocalImageState.AVAILABLE
                )
    return version


def seed_every_kind(prefix: str = "") -> Seeded:
    """One failed build, one failed test run, one stale image, one deprecation with notices,
    one EOL proposal, one newer upstream serial, one janitor finding, one image request and
    one current version missing from an enabled zone.

    `prefix` makes labels unique so that the helper can run more than once (scale tests)."""
    today = timezone.localdate()
    zone, _ = Zone.objects.get_or_create(code="fr-par-1", defaults={"enabled": True})

    built = os_image(f"{prefix}debian_build")
    _version(built, "2026-01-01", days_ago=1, released=True)
    failed_build = Build.objects.create(
        image=built,
        state=BuildState.FAILED,
        failure_stage="customize",
        failure_reason="apt-get install nginx: unable to locate package",
    )

    tested = os_image(f"{prefix}debian_tested")
    version = _version(tested, "2026-01-02", days_ago=1, released=False)
    run = TestRun.objects.create(
        version=version, zone=zone, state=TestRunState.FINISHED, checks=["ssh", "dns"]
    )
    CheckResult.objects.create(test_run=run, check_name="ssh", state=CheckState.PASSED)
    CheckResult.objects.create(
        test_run=run, check_name="dns", state=CheckState.FAILED, reason="no answer from 1.1.1.1"
    )

    stale = os_image(f"{prefix}debian_stale")
    _version(stale, "2025-01-01", days_ago=200, released=True)

    deprecated = os_image(f"{prefix}ubuntu_focal")
    _version(deprecated, "2026-01-03", days_ago=1, released=True)
    deprecated.state = ImageState.DEPRECATION_SCHEDULED
    deprecated.deprecation_date = today + dt.timedelta(days=30)
    deprecated.save()
    customer = Customer.objects.create(
        name=f"{prefix}Acme", email=f"{prefix}ops@acme.example", project_id=f"{prefix}p1"
    )
    other = Customer.objects.create(
        name=f"{prefix}Beta", email=f"{prefix}ops@beta.example", project_id=f"{prefix}p2"
    )
    for who, state in ((customer, NoticeState.SENT), (other, NoticeState.FAILED)):
        Notice.objects.create(
            customer=who,
            image=deprecated,
            kind="30",
            deprecation_date=deprecated.deprecation_date,
            due_at=timezone.now(),
            state=state,
        )

    proposed = os_image(f"{prefix}ubuntu_noble", eol=dt.date(2029, 5, 31))
    _version(proposed, "2026-01-04", days_ago=1, released=True)
    eol = proposed.upstream
    eol.proposed_security_support_end = dt.date(2029, 4, 25)
    eol.proposed_at = timezone.now()
    eol.save()

    serial = os_image(f"{prefix}debian_serial")
    _version(serial, "2026-01-05", days_ago=1, released=True, serial="20260101-1")
    UpstreamCheck.objects.create(
        image=serial,
        arch="x86_64",
        serial_seen="20260201-2",
        previous_serial="20260101-1",
        outcome=CheckOutcome.FAILED_BEFORE,
    )

    JanitorRun.objects.create(
        finished_at=timezone.now(),
        findings=[
            {
                "kind": "server",
                "where": "fr-par-1",
                "id": f"{prefix}11111111-2222",
                "name": "factory-test-9",
                "build": None,
                "created": "",
                "orphan": True,
                "reason": "its test run ended",
                "action": "error",
            },
            {"kind": "server", "where": "fr-par-1", "id": "kept", "orphan": False},
        ],
    )

    gap = os_image(f"{prefix}debian_gap")
    ImageVersion.objects.create(  # released, but published nowhere
        image=gap,
        name="2026-01-06",
        released_at=timezone.now(),
        state=VersionState.RELEASED,
    )

    request = ImageRequest.objects.create(
        kind="os", name=f"{prefix}FreeBSD 14", normalized_name=f"{prefix}freebsd 14"
    )
    for n in range(3):
        Requester.objects.create(
            request=request, email=f"{prefix}r{n}@example.com", confirmed_at=timezone.now()
        )
    return Seeded(failed_build, run, stale, deprecated, eol, serial, request)
