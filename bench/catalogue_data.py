"""A catalogue at scale for bench/pages.py: images with versions, releases, local images,
builds and test results, customers with notices, image requests and the audit log.

    generate(images=1000)   # into the database Django is configured with (empty, migrated)

Per image: VERSIONS versions (the older half released, the newest of those current), each
published in every zone, built by a build, and tested (one run per zone, one result per
check); CHECK_RESULTS per image is VERSIONS x zones x checks. The customers, notices, audit
entries and requests do not depend on the number of images, so that two sizes differ only in
the catalogue. Everything is written with bulk_create, a batch at a time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from builds.models import Build, CheckResult, TestRun
from builds.testing import orchestration
from catalog.models import (
    AuditEntry,
    Category,
    Image,
    ImageVersion,
    LocalImage,
    UpstreamLifecycle,
    Zone,
)
from lifecycle.models import Customer, ImageRequest, Notice, Release, Requester

VERSIONS = 10
ZONES = ["fr-par-1", "fr-par-2", "fr-par-3", "nl-ams-1", "pl-waw-1"]
PACKAGES = 200  # per version's manifest: the feed must not read them
DISTRIBUTIONS = ["debian", "ubuntu", "fedora", "alma", "rocky", "centos", "arch", "opensuse"]
BATCH = 5000


def _batches(rows: Iterable[Any]) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        yield batch


def _write(model: type, rows: Iterable[Any]) -> list[Any]:
    created: list[Any] = []
    for batch in _batches(rows):
        created += model.objects.bulk_create(batch)  # type: ignore[attr-defined]
    return created


def _images(count: int, now: dt.datetime) -> list[Image]:
    os_category = Category.objects.get_or_create(name="Distributions")[0]
    app_category = Category.objects.get_or_create(name="InstantApps")[0]
    os_count = count * 3 // 4
    images = _write(
        Image,
        (
            Image(
                kind="os",
                label=f"{DISTRIBUTIONS[n % len(DISTRIBUTIONS)]}_{n:04d}",
                name=f"{DISTRIBUTIONS[n % len(DISTRIBUTIONS)].title()} {n}",
                distribution=DISTRIBUTIONS[n % len(DISTRIBUTIONS)],
                version=str(n // len(DISTRIBUTIONS) + 1),
                category=os_category,
                architectures=["x86_64"],
                commercial_types=["DEV1-S", "DEV1-M", "GP1-XS"],
                description="A generated distribution image.",
                state="deprecated" if n % 25 == 0 else "active",
            )
            for n in range(os_count)
        ),
    )
    _write(
        UpstreamLifecycle,
        (
            UpstreamLifecycle(
                image=image,
                eol_product=image.distribution,
                eol_cycle=image.version,
                release_date=dt.date(2020, 1, 1) + dt.timedelta(days=n * 3),
                security_support_end=dt.date(2025, 1, 1) + dt.timedelta(days=n * 3),
                security_support_end_source="demo",
                last_checked_at=now,
            )
            for n, image in enumerate(images)
        ),
    )
    images += _write(
        Image,
        (
            Image(
                kind="instantapp",
                label=f"app_{n:04d}",
                name=f"App {n}",
                category=app_category,
                architectures=["x86_64"],
                base_image=images[n % os_count],
            )
            for n in range(count - os_count)
        ),
    )
    return images


def _versions(images: list[Image], zones: list[Zone], now: dt.datetime) -> None:
    manifest = [{"name": f"package-{n:03d}", "version": f"1.{n}-1"} for n in range(PACKAGES)]
    recipe = [{"type": "packages", "params": {"install": ["nginx"]}, "enabled": True}]
    released = VERSIONS // 2

    def version_rows() -> Iterator[ImageVersion]:
        for image in images:
            for v in range(VERSIONS):
                created = now - dt.timedelta(days=(VERSIONS - v) * 14)
                yield ImageVersion(
                    image=image,
                    name=created.date().isoformat(),
                    state="released" if v < released else "tested",
                    created_at=created,
                    released_at=created + dt.timedelta(hours=3) if v < released else None,
                    upstream_serial=f"serial-{v}",
                    manifest=manifest,
                    recipe=recipe,
                )

    checks = [c.name for c in orchestration.checks()]
    for batch in _batches(version_rows()):
        versions = ImageVersion.objects.bulk_create(batch)
        _write(
            LocalImage,
            (
                LocalImage(
                    version=version,
                    zone=zone,
                    provider_image_id=f"img-{version.pk}-{zone.pk}",
                    state="available",
                )
                for version in versions
                for zone in zones
            ),
        )
        _write(
            Release,
            (
                Release(version=version, released_at=version.released_at, publisher="feed")
                for version in versions
                if version.released_at
            ),
        )
        _write(
            Build,
            (
                Build(
                    image_id=version.image_id,
                    state="done",
                    version=version,
                    created_at=version.created_at - dt.timedelta(hours=1),
                    finished_at=version.created_at,
                )
                for version in versions
            ),
        )
        runs = _write(
            TestRun,
            (
                TestRun(version=version, zone=zone, checks=checks, state="finished")
                for version in versions
                for zone in zones
            ),
        )
        _write(
            CheckResult,
            (
                CheckResult(test_run=run, check_name=name, state="passed", duration=12.5)
                for run in runs
                for name in checks
            ),
        )


def _people(customers: int, notices: int, audit: int, images: list[Image]) -> None:
    created = _write(
        Customer,
        (
            Customer(
                project_id=f"00000000-0000-0000-0000-{n:012d}",
                name=f"Customer {n:06d}",
                email=f"c{n}@example.com",
            )
            for n in range(customers)
        ),
    )
    kinds = ["90", "30", "7"]
    os_images = [image for image in images if image.kind == "os"]

    def notice_rows() -> Iterator[Notice]:
        # Spread over the OS images; unique per (customer, image, kind) while notices are at
        # most three per customer.
        for n in range(notices):
            customer = created[n % len(created)]
            # 1 % need a decision: about half uncertain, half failed.
            state = "sent" if n % 100 else ("uncertain" if n % 200 else "failed")
            yield Notice(
                customer=customer,
                image=os_images[n % len(os_images)],
                kind=kinds[(n // len(created)) % len(kinds)],
                deprecation_date=dt.date(2027, 3, 1),
                due_at=timezone.now(),
                state=state,
                last_error="550 refused" if state == "failed" else "",
                message_id=f"<notice.{n}@example.com>",
            )

    _write(Notice, notice_rows())
    start = timezone.now()
    _write(
        AuditEntry,
        (
            AuditEntry(
                created_at=start - dt.timedelta(seconds=n * 7),
                actor_name="bench",
                action=["recipe.step_add", "eol.import", "build.queued"][n % 3],
                image=images[n % len(images)],
                target_repr=f"entry {n}",
                before={"state": "active"},
                after={"state": "deprecation_scheduled"},
            )
            for n in range(audit)
        ),
    )
    requests = _write(
        ImageRequest,
        (
            ImageRequest(kind="os", name=f"Distro {n}", normalized_name=f"distro {n}", status="new")
            for n in range(2000)
        ),
    )
    _write(
        Requester,
        (
            Requester(request=item, email=f"r{k}-{item.pk}@example.com", confirmed_at=start)
            for item in requests
            for k in range(1 + item.pk % 3)
        ),
    )


def generate(
    images: int,
    customers: int = 100_000,
    notices: int = 300_000,
    audit: int = 200_000,
    say: Callable[[str], None] = print,
) -> None:
    """Fill the (empty, migrated) database with a catalogue of `images` images."""
    started = time.perf_counter()
    now = timezone.now()
    with transaction.atomic():
        zones = [Zone.objects.create(code=code, enabled=True) for code in ZONES]
        catalogue = _images(images, now)
        say(f"  {len(catalogue)} images ({time.perf_counter() - started:.0f} s)")
        _versions(catalogue, zones, now)
        say(
            f"  {ImageVersion.objects.count()} versions, {CheckResult.objects.count()} check "
            f"results ({time.perf_counter() - started:.0f} s)"
        )
        _people(customers, notices, audit, catalogue)
        User.objects.create_superuser("bench", "bench@example.com", "bench-password")
    say(
        f"  {customers} customers, {notices} notices, {audit} audit entries "
        f"({time.perf_counter() - started:.0f} s)"
    )
