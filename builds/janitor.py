"""The janitor: finds what the factory left in the cloud and no longer needs, and deletes it.

It lists everything tagged "image-factory" in every zone (instance images, snapshots,
volumes, servers, security groups and flexible IPs; Block Storage volumes and snapshots),
in every region (VPC private networks), and every object under the factory's prefix in each
region's bucket, and decides for each one:

- what a test run made (tagged "test-run:<id>") is kept while that run is queued or
  running, and an orphan once it has ended or no longer exists (kept-for-debugging
  resources included: they were kept for a person to look at, not for ever);
- otherwise kept: its build is still running, or (build done) a LocalImage still
  references it, by its image id or its snapshot id, or through its image (the Instance or
  Block snapshot behind a referenced image, on either storage type);
- otherwise orphan: no build tag, its build no longer exists, its build failed or was
  cancelled, or its build is done and no LocalImage references it (a duplicate, a test
  server left behind, the upload an import has finished with);
- an orphan snapshot (Instance or Block) behind an image the janitor keeps is kept with it:
  the image still needs it (and the cloud would refuse to delete it).

An orphan is deleted only when older than the threshold (by its creation date, and for a
test run's resource also by the run's end: a flexible IP has no creation date), so that
work in progress is never touched; with `dry_run` nothing is deleted. Orphans are deleted
servers first (which frees their security groups, IPs and private NICs), images before the
snapshots behind them (a Block snapshot is in use until its image's deletion is applied:
its deletion waits for that), private networks after them. Every finding, deletion and
error is recorded on a JanitorRun row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from builds.choices import ACTIVE_STATES, BuildState
from builds.models import Build, JanitorRun, TestRun
from builds.testing import ledger
from catalog.choices import LocalImageState
from catalog.models import LocalImage, Zone
from cloud import clients, deletion, objectstorage, tags
from cloud.retries import CloudError, call

log = logging.getLogger(__name__)

HELD_RETRY_SECONDS = 120.0  # a security group or private network still held, at most


@dataclass
class Finding:
    """One tagged resource the janitor saw, and what it decided."""

    kind: str
    where: str  # zone, region for private networks, or region/bucket for objects
    id: str
    name: str
    build: int | None
    created: str
    orphan: bool
    reason: str
    action: str = "kept"  # kept | deleted | would delete | too recent | error
    state: str = ""
    test_run: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.id} in {self.where}"


# --- listing ----------------------------------------------------------------------------------


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else ""


def _list_zone(
    zone: str, errors: list[str], backing: dict[str, list[str]] | None = None
) -> list[Finding]:
    """Everything tagged by the factory in one zone (a listing that fails is an error, not
    an empty zone). `backing` receives, per factory image, the ids of the snapshots (Instance
    or Block) behind it."""
    instance = clients.instance_api()
    block = clients.block_api()
    found: list[Finding] = []

    def collect(kind: str, fetch: Callable[[], list[Any]], created: str, state: str) -> None:
        try:
            items = fetch()
        except CloudError as exc:
            errors.append(f"listing {kind}s in {zone}: {exc}")
            return
        for item in items:
            item_tags = getattr(item, "tags", None) or []
            if not tags.is_factory(item_tags):
                continue
            if kind == "image" and backing is not None:
                backing[item.id] = deletion.snapshots_of(item)
            found.append(
                Finding(
                    kind=kind,
                    where=zone,
                    id=item.id,
                    # A flexible IP has no name: its address stands for it.
                    name=getattr(item, "name", "") or getattr(item, "address", "") or "",
                    build=tags.build_id_of(item_tags),
                    created=_iso(getattr(item, created, None)),
                    orphan=False,
                    reason="",
                    state=str(getattr(item, state, "") or ""),
                    test_run=tags.run_id_of(item_tags),
                )
            )

    def listing(method: Callable[..., list[Any]], what: str, **kwargs: Any) -> Callable:
        return lambda: call(method, zone=zone, what=f"list {what} in {zone}", **kwargs)

    factory = tags.FACTORY_TAG
    collect(
        "server",
        listing(instance.list_servers_all, "servers", tags=[factory]),
        "creation_date",
        "state",
    )
    collect(
        "image", listing(instance.list_images_all, "images", tags=factory), "creation_date", "state"
    )
    collect(
        "snapshot",
        listing(instance.list_snapshots_all, "snapshots", tags=factory),
        "creation_date",
        "state",
    )
    collect(
        "volume",
        listing(instance.list_volumes_all, "volumes", tags=[factory]),
        "creation_date",
        "state",
    )
    collect(
        "block_volume",
        listing(block.list_volumes_all, "block volumes", tags=[factory], include_deleted=False),
        "created_at",
        "status",
    )
    collect(
        "block_snapshot",
        listing(
            block.list_snapshots_all,
            "block snapshots",
            tags=[factory],
            include_deleted=False,
        ),
        "created_at",
        "status",
    )
    collect(
        "security_group",
        listing(instance.list_security_groups_all, "security groups", tags=[factory]),
        "creation_date",
        "state",
    )
    collect(
        "ip",
        listing(instance.list_ips_all, "flexible IPs", tags=[factory]),
        "creation_date",  # none: see _old_enough
        "state",
    )
    return found


def _list_private_networks(region: str, errors: list[str]) -> list[Finding]:
    """The factory's private networks of a region (VPC v2 is regional)."""
    try:
        items = call(
            clients.vpc_api().list_private_networks_all,
            region=region,
            tags=[tags.FACTORY_TAG],
            what=f"list private networks in {region}",
        )
    except CloudError as exc:
        errors.append(f"listing private networks in {region}: {exc}")
        return []
    # The filter is "any of" on VPC: the factory's tag is checked again.
    return [
        Finding(
            kind="private_network",
            where=region,
            id=item.id,
            name=item.name or "",
            build=tags.build_id_of(item.tags),
            created=_iso(item.created_at),
            orphan=False,
            reason="",
            test_run=tags.run_id_of(item.tags),
        )
        for item in items
        if tags.is_factory(item.tags)
    ]


def _list_region(region: str, errors: list[str]) -> list[Finding]:
    bucket = objectstorage.bucket_name(region)
    try:
        objects = objectstorage.list_objects(
            clients.s3_client(region), region, bucket, tags.OBJECT_PREFIX
        )
    except CloudError as exc:
        errors.append(f"listing objects in {region}: {exc}")
        return []
    return [
        Finding(
            kind="object",
            where=f"{region}/{bucket}",
            id=obj.key,
            name=obj.key.rsplit("/", 1)[-1],
            build=tags.build_id_of_key(obj.key),
            created=_iso(obj.last_modified),
            orphan=False,
            reason="",
        )
        for obj in objects
    ]


# --- deciding ---------------------------------------------------------------------------------


def _decide(
    finding: Finding, builds: dict[int, Build], referenced: set[str], runs: dict[int, TestRun]
) -> None:
    """Set `orphan` and `reason` (see the module docstring)."""
    if finding.test_run is not None:
        run = runs.get(finding.test_run)
        if run is None:
            finding.orphan = True
            finding.reason = f"test run #{finding.test_run} no longer exists"
        elif run.is_active:
            finding.orphan, finding.reason = False, f"test run #{run.pk} is still {run.state}"
        else:
            finding.orphan = True
            finding.reason = f"test run #{run.pk} has ended ({run.get_state_display().lower()})"
            if any(k.get("id") == finding.id for k in run.kept_resources or []):
                finding.reason += "; it was kept for debugging"
        return
    if finding.build is None:
        finding.orphan, finding.reason = True, "tagged by the factory but with no build tag"
        return
    build = builds.get(finding.build)
    if build is None:
        finding.orphan, finding.reason = True, f"build #{finding.build} no longer exists"
    elif build.state in ACTIVE_STATES:
        finding.orphan, finding.reason = False, f"build #{build.pk} is still running"
    elif build.state in (BuildState.FAILED, BuildState.CANCELLED):
        finding.orphan = True
        finding.reason = f"build #{build.pk} {build.get_state_display().lower()}"
    elif finding.kind == "object":
        finding.orphan = True
        finding.reason = f"build #{build.pk} is done: its imports no longer need the upload"
    elif finding.id in referenced:
        finding.orphan, finding.reason = False, f"in use by build #{build.pk}'s published images"
    else:
        finding.orphan = True
        finding.reason = f"build #{build.pk} is done and no published image references it"


def _keep_behind_kept_images(findings: list[Finding], backing: dict[str, list[str]]) -> None:
    """An orphan snapshot behind an image that stays (kept, or too recent to delete) stays
    too: the image needs it, and the cloud would refuse its deletion."""
    held: dict[str, str] = {}  # snapshot id -> the image that stays
    for finding in findings:
        if finding.kind == "image" and (not finding.orphan or finding.action == "too recent"):
            for snapshot_id in backing.get(finding.id, ()):
                held.setdefault(snapshot_id, finding.id)
    for finding in findings:
        if finding.kind in ("snapshot", "block_snapshot") and finding.orphan:
            image_id = held.get(finding.id)
            if image_id is not None and finding.action != "too recent":
                finding.orphan = False
                finding.reason += f"; kept: image {image_id}, which stays, is made from it"


def _old_enough(finding: Finding, limit: dt.datetime, runs: dict[int, TestRun]) -> bool:
    run = runs.get(finding.test_run) if finding.test_run is not None else None
    if run is not None and run.finished_at and run.finished_at > limit:
        return False  # its test run ended too recently (kept resources get the threshold)
    if not finding.created:
        return True  # no creation date to go by: the tags and their run or build decide
    try:
        created = dt.datetime.fromisoformat(finding.created)
    except ValueError:
        return True
    if timezone.is_naive(created):
        created = timezone.make_aware(created, dt.UTC)
    return created <= limit


# --- deleting ---------------------------------------------------------------------------------


def _delete(finding: Finding) -> None:
    """Delete one orphan; an already-gone resource counts as deleted."""
    zone = finding.where
    timeout = float(settings.JANITOR_WAIT_SECONDS)
    if finding.kind in ("security_group", "private_network", "ip"):
        # As a test run deletes them: a group or a network still held by a server on its way
        # out (its NICs going away) is tried again for a while, not for the whole wait (one
        # held by a server that stays is an error to report, not to wait out).
        entry = ledger.Entry(
            kind=finding.kind, id=finding.id, owner="janitor", zone=zone, region=zone
        )
        ledger.delete(ledger.Apis.from_env(), entry, timeout=min(timeout, HELD_RETRY_SECONDS))
        return
    if finding.kind == "object":
        region, bucket = finding.where.split("/", 1)
        objectstorage.delete_object(clients.s3_client(region), bucket, finding.id)
        return
    if finding.kind == "block_volume":
        deletion.delete_block_volume(zone, finding.id)
        return
    if finding.kind == "block_snapshot":
        # Once its image is deleted (images go first), it stays in use until the cloud has
        # applied that: the deletion waits.
        deletion.delete_block_snapshot(zone, finding.id, timeout=timeout)
        return
    instance = clients.instance_api()
    if finding.kind == "server":
        deletion.delete_server(instance, zone, finding.id, timeout=timeout)
    elif finding.kind == "image":
        deletion.delete_image(instance, zone, finding.id)
    elif finding.kind == "snapshot":
        deletion.delete_snapshot(instance, zone, finding.id, timeout=timeout)
    elif finding.kind == "volume":
        deletion.delete_volume(instance, zone, finding.id)


# --- the run ----------------------------------------------------------------------------------


def run_janitor(*, older_than: dt.timedelta, dry_run: bool, user: Any = None) -> JanitorRun:
    """One pass over every zone and region; returns the recorded JanitorRun."""
    run = JanitorRun.objects.create(
        dry_run=dry_run,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
    )
    errors: list[str] = []
    removed: list[dict] = []
    zones = sorted(Zone.objects.values_list("code", flat=True))
    findings: list[Finding] = []
    try:
        clients.client()  # a misconfigured cloud is one clear error, not one per listing
    except CloudError as exc:
        errors.append(str(exc))
        zones = []
    backing: dict[str, list[str]] = {}  # factory image id -> the snapshots behind it
    for zone in zones:
        findings.extend(_list_zone(zone, errors, backing))
    for region in sorted({code.rsplit("-", 1)[0] for code in zones}):
        findings.extend(_list_private_networks(region, errors))
        findings.extend(_list_region(region, errors))

    run_ids = {f.test_run for f in findings if f.test_run is not None}
    runs = {r.pk: r for r in TestRun.objects.filter(pk__in=run_ids)}
    build_ids = {f.build for f in findings if f.build is not None}
    builds = {b.pk: b for b in Build.objects.filter(pk__in=build_ids)}
    referenced: set[str] = set()
    for image_id, snapshot_id in (
        LocalImage.objects.filter(version__build__pk__in=build_ids)
        .exclude(state=LocalImageState.DELETED)
        .values_list("provider_image_id", "snapshot_id")
    ):
        referenced.update(x for x in (image_id, snapshot_id) if x)
        referenced.update(backing.get(image_id, ()))  # the snapshots behind its image
    limit = timezone.now() - older_than
    for finding in findings:
        _decide(finding, builds, referenced, runs)
        if finding.orphan and not _old_enough(finding, limit, runs):
            finding.action = "too recent"
    _keep_behind_kept_images(findings, backing)

    findings.sort(key=lambda f: (deletion.KIND_ORDER.index(f.kind), f.where, f.id))
    for finding in findings:
        if not finding.orphan or finding.action == "too recent":
            continue
        if dry_run:
            finding.action = "would delete"
            continue
        try:
            _delete(finding)
        except CloudError as exc:
            finding.action = "error"
            errors.append(f"deleting {finding.label}: {exc}")
            continue
        finding.action = "deleted"
        removed.append({"kind": finding.kind, "where": finding.where, "id": finding.id})
        if finding.kind == "image":
            LocalImage.objects.filter(provider_image_id=finding.id).update(
                state=LocalImageState.DELETED
            )

    run.findings = [asdict(f) for f in findings]
    run.removed = removed
    run.errors = errors
    run.finished_at = timezone.now()
    run.save(update_fields=["findings", "removed", "errors", "finished_at"])
    log.info(
        "janitor run %s: %d finding(s), %d removed, %d error(s)%s",
        run.pk,
        len(findings),
        len(removed),
        len(errors),
        " (dry run)" if dry_run else "",
    )
    return run


def janitor_task(older_than_hours: float | None = None, dry_run: bool | None = None) -> str:
    """The django-q2 task of the daily schedule (and of "Run janitor now")."""
    hours = float(
        older_than_hours if older_than_hours is not None else settings.JANITOR_OLDER_THAN_HOURS
    )
    dry = bool(dry_run if dry_run is not None else settings.JANITOR_DRY_RUN)
    run = run_janitor(older_than=dt.timedelta(hours=hours), dry_run=dry)
    return (
        f"janitor run {run.pk}: {len(run.findings)} finding(s), {len(run.removed)} removed, "
        f"{len(run.errors)} error(s)"
    )


def janitor_task_for(user_id: int | None, older_than_hours: float, dry_run: bool) -> str:
    """The task behind the page's "Run janitor now": records who asked."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run = run_janitor(older_than=dt.timedelta(hours=older_than_hours), dry_run=dry_run, user=user)
    return f"janitor run {run.pk}: {len(run.removed)} removed, {len(run.errors)} error(s)"
