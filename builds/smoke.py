"""A smoke test of the cloud the factory points at (`manage.py scaleway_smoke`): with real
credentials, real Scaleway; otherwise localcloud, as tests run it.

In one zone it publishes a small bootable QCOW2 (the fixture image) with both storage types,
the product's own way (`builds.publish`), boots one server of each kind (the local image on
TEST_COMMERCIAL_TYPE_LOCAL, the Block Storage one on TEST_COMMERCIAL_TYPE_BLOCK) through the
test runner with the Network and Reboot checks only, then deletes everything it made: the
servers (the runner), the images, snapshots and object (`builds.publish.discard`), and its
catalogue rows. It says what it cost: each server's runtime times its type's `hourly_price`
from the zone's product list, plus the storage of the snapshots and images for as long as
they existed, at SMOKE_STORAGE_EUR_PER_GB_MONTH (an estimate to set from your price list).

The catalogue rows (a category, an image `factory_smoke`, its version and build) exist only
while it runs, so that everything goes through the same code as a real build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from builds import publish
from builds.choices import BuildState
from builds.leases import worker_name
from builds.models import Build, TestRun, TestRunResource
from builds.testing import orchestration
from catalog.choices import ImageKind, StorageType
from catalog.models import Category, Image, ImageVersion, Zone
from cloud import clients
from cloud.retries import CloudError, call

LABEL = "factory_smoke"
CHECKS = ["network", "reboot"]
HOURS_PER_MONTH = 730.0

Say = Callable[[str], None]


class SmokeError(Exception):
    """The smoke test could not run (no credentials, no image, a zone unknown)."""


@dataclass
class ServerUse:
    commercial_type: str
    started: float
    ended: float | None = None

    @property
    def hours(self) -> float:
        return max(0.0, (self.ended or time.monotonic()) - self.started) / 3600


@dataclass
class Result:
    zone: str
    images: dict[str, str] = field(default_factory=dict)  # storage type -> image id
    checks: dict[str, dict[str, str]] = field(default_factory=dict)  # storage -> check -> state
    reasons: list[str] = field(default_factory=list)
    servers: list[ServerUse] = field(default_factory=list)
    storage_gb_hours: float = 0.0
    prices: dict[str, float] = field(default_factory=dict)
    left_behind: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        states = [s for per_type in self.checks.values() for s in per_type.values()]
        return bool(states) and all(s == "passed" for s in states) and not self.left_behind

    def server_cost(self) -> float:
        return sum(self.prices.get(s.commercial_type, 0.0) * s.hours for s in self.servers)

    def storage_cost(self) -> float:
        rate = float(settings.SMOKE_STORAGE_EUR_PER_GB_MONTH) / HOURS_PER_MONTH
        return self.storage_gb_hours * rate

    def summary(self) -> list[str]:
        lines = [f"Smoke test in {self.zone}: {'passed' if self.passed else 'FAILED'}"]
        for kind in StorageType:
            if kind.value not in self.images and kind.value not in self.checks:
                continue
            states = self.checks.get(kind.value, {})
            words = ", ".join(f"{name} {state}" for name, state in states.items()) or "not run"
            lines.append(f"  {kind.label}: image {self.images.get(kind.value, '-')}: {words}")
        lines += [f"  {reason}" for reason in self.reasons]
        for server in self.servers:
            price = self.prices.get(server.commercial_type)
            priced = f"{price:.4f} EUR/h" if price is not None else "price unknown"
            lines.append(
                f"  server {server.commercial_type}: {server.hours * 3600:.0f} s at {priced}"
            )
        lines.append(
            f"  storage: {self.storage_gb_hours:.4f} GB-hours at "
            f"{settings.SMOKE_STORAGE_EUR_PER_GB_MONTH} EUR per GB-month "
            "(SMOKE_STORAGE_EUR_PER_GB_MONTH)"
        )
        total = self.server_cost() + self.storage_cost()
        lines.append(
            f"  cost: {total:.4f} EUR (servers {self.server_cost():.4f}, "
            f"storage {self.storage_cost():.4f})"
        )
        if self.left_behind:
            lines.append("  LEFT BEHIND (delete by hand): " + "; ".join(self.left_behind))
        else:
            lines.append("  everything it made is deleted")
        return lines


def default_image() -> Path | None:
    """The newest bootable fixture image in FIXTURE_CACHE_DIR (what `make test` builds)."""
    folder = Path(os.environ.get("FIXTURE_CACHE_DIR") or "/var/cache/image-factory-fixtures")
    found = sorted(
        folder.glob("debian-bookworm-bootable-ready-*.qcow2"), key=lambda p: p.stat().st_mtime
    )
    return found[-1] if found else None


def _prices(zone: str) -> dict[str, float]:
    api = clients.instance_api()
    answer = call(api.list_servers_types, zone=zone, what=f"list server types in {zone}")
    return {name: float(kind.hourly_price or 0.0) for name, kind in answer.servers.items()}


class _ServerClock:
    """Times each server a test run creates, from its ledger row's creation to its removal."""

    def __init__(self, result: Result, types: dict[int, str]) -> None:
        self.result = result
        self.types = types  # test run id -> commercial type
        self.open: dict[tuple[int, str], ServerUse] = {}

    def created(self, sender: Any, instance: TestRunResource, created: bool, **kw: Any) -> None:
        if created and instance.kind == "server" and instance.test_run_id in self.types:
            use = ServerUse(self.types[instance.test_run_id], time.monotonic())
            self.open[(instance.test_run_id, instance.resource_id)] = use
            self.result.servers.append(use)

    def deleted(self, sender: Any, instance: TestRunResource, **kw: Any) -> None:
        use = self.open.pop((instance.test_run_id, instance.resource_id), None)
        if use is not None:
            use.ended = time.monotonic()

    def __enter__(self) -> _ServerClock:
        post_save.connect(self.created, sender=TestRunResource, dispatch_uid="smoke-created")
        post_delete.connect(self.deleted, sender=TestRunResource, dispatch_uid="smoke-deleted")
        return self

    def __exit__(self, *exc: object) -> None:
        post_save.disconnect(sender=TestRunResource, dispatch_uid="smoke-created")
        post_delete.disconnect(sender=TestRunResource, dispatch_uid="smoke-deleted")
        for use in self.open.values():
            use.ended = use.ended or time.monotonic()


def run(zone_code: str, artefact: Path, say: Say) -> Result:
    """Publish, boot, check and delete in `zone_code`; never leaves catalogue rows behind."""
    if not artefact.is_file():
        raise SmokeError(f"{artefact} is not a file: give a bootable QCOW2 with --image.")
    try:
        clients.client()
    except CloudError as exc:
        raise SmokeError(str(exc)) from exc
    if Image.objects.filter(label=LABEL).exists():
        raise SmokeError(
            f"An image labelled {LABEL} exists: another smoke test runs, or one was killed "
            "(delete its rows and run `manage.py janitor` for its cloud resources)."
        )
    result = Result(zone_code)
    result.prices = _prices(zone_code)
    zone, created_zone = Zone.objects.get_or_create(code=zone_code, defaults={"enabled": False})
    category, created_category = Category.objects.get_or_create(name="Smoke tests")
    image = Image.objects.create(
        kind=ImageKind.OS,
        label=LABEL,
        name="Factory smoke test",
        description="Temporary: made and deleted by manage.py scaleway_smoke.",
        category=category,
        architectures=["x86_64"],
        storage_types=list(StorageType.values),
    )
    version = ImageVersion.objects.create(
        image=image,
        arch="x86_64",
        name=timezone.now().strftime("%Y%m%d-%H%M%S"),
        artefact_path=str(artefact),
    )
    build = Build.objects.create(
        image=image, arch="x86_64", state=BuildState.PUBLISHING, version=version
    )
    published_at = time.monotonic()
    size_gb = artefact.stat().st_size / 1e9
    try:
        say(f"Publishing {artefact.name} in {zone_code} on local storage and Block Storage")
        try:
            locals_ = publish.retry_zone(
                build.pk,
                version,
                zone,
                storage_types=StorageType.values,
                artefact=artefact,
                log=say,
            )
        except publish.PublishError as exc:
            result.reasons.append(f"publish failed: {exc}")
            return result
        result.images = {li.storage_type: li.provider_image_id for li in locals_}
        say(f"Booting one server per storage type and running {', '.join(CHECKS)}")
        runs = orchestration.create_runs(
            version,
            [zone],
            storage_types=StorageType.values,
            names=CHECKS,
            reason="scaleway_smoke",
        )
        types = {
            r.pk: (
                settings.TEST_COMMERCIAL_TYPE_BLOCK
                if r.storage_type == StorageType.SBS
                else settings.TEST_COMMERCIAL_TYPE_LOCAL
            )
            for r in runs
        }
        with _ServerClock(result, types):
            orchestration.run_in_parallel([r.pk for r in runs], worker_name(per_call=True))
        for test_run in TestRun.objects.filter(pk__in=[r.pk for r in runs]):
            per_type = result.checks.setdefault(test_run.storage_type, {})
            for check in test_run.results.order_by("check_name"):
                per_type[check.check_name] = check.state
                if check.state != "passed" and check.reason:
                    label = StorageType(test_run.storage_type).label
                    result.reasons.append(f"{label} {check.check_name}: {check.reason[:300]}")
            if test_run.error:
                result.reasons.append(f"test run: {test_run.error[:300]}")
            result.left_behind += [
                f"{r.kind} {r.resource_id} ({r.zone})" for r in test_run.resources.all()
            ]
    finally:
        say("Deleting what the smoke test made")
        try:
            publish.discard(build.pk, log=say)
        except CloudError as exc:
            result.left_behind.append(str(exc))
        hours = (time.monotonic() - published_at) / 3600
        # Each storage type holds a snapshot and an image of about the artefact's size.
        result.storage_gb_hours = size_gb * hours * 2 * len(result.images or StorageType.values)
        TestRun.objects.filter(version=version).delete()
        Build.objects.filter(pk=build.pk).delete()
        version.delete()
        image.delete()
        if created_category and not category.images.exists():
            category.delete()
        if created_zone and not zone.local_images.exists():
            zone.delete()
    return result


__all__ = ["Result", "SmokeError", "default_image", "run"]
