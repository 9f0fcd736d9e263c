"""Refreshing who runs what: servers from the cloud's usage source mapped to customers.

A server counts when its project (or organization) belongs to a Customer and its image id
is one of our LocalImages. A refresh that fails keeps the last known usage and records the
failure, so notices still reach the customers we knew about.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from catalog.models import LocalImage
from cloud.retries import CloudError
from cloud.usage import UsageSource, usage_source
from lifecycle.models import Customer, Usage, UsageRefresh

log = logging.getLogger(__name__)


def _image_map() -> dict[str, tuple[int, int]]:
    """provider image id -> (image id, version id), for every version of every image."""
    rows = LocalImage.objects.exclude(provider_image_id="").values_list(
        "provider_image_id", "version__image_id", "version_id"
    )
    return {provider_id: (image_id, version_id) for provider_id, image_id, version_id in rows}


def _customer_map() -> tuple[dict[str, int], dict[str, int]]:
    """(project id -> customer id, organization id -> customer id)."""
    by_project: dict[str, int] = {}
    by_org: dict[str, int] = {}
    for pk, project_id, org_id in Customer.objects.values_list(
        "pk", "project_id", "organization_id"
    ):
        if project_id:
            by_project[project_id] = pk
        elif org_id:
            by_org[org_id] = pk
    return by_project, by_org


def refresh_usage(source: UsageSource | None = None) -> UsageRefresh:
    """Replace the usage table with what the cloud reports now; on failure keep it."""
    refresh = UsageRefresh.objects.create()
    try:
        source = source or usage_source()
        refresh.source = source.name
        servers = list(source.servers())
    except CloudError as exc:
        refresh.ok = False
        refresh.message = f"Usage refresh failed, the last known usage is kept: {exc}"
        refresh.usages_kept = Usage.objects.count()
        refresh.finished_at = timezone.now()
        refresh.save()
        log.warning("usage refresh failed: %s", exc)
        return refresh

    images = _image_map()
    by_project, by_org = _customer_map()
    now = timezone.now()
    seen: dict[str, Usage] = {}
    unknown_customer = unknown_image = 0
    for server in servers:
        target = images.get(server.image_id)
        customer_id = by_project.get(server.project_id) or by_org.get(server.organization_id)
        if target is None:
            unknown_image += 1
            continue
        if customer_id is None:
            unknown_customer += 1
            continue
        seen[server.server_id] = Usage(
            customer_id=customer_id,
            image_id=target[0],
            version_id=target[1],
            zone=server.zone,
            server_id=server.server_id,
            server_name=server.name[:200],
            provider_image_id=server.image_id,
            last_seen=now,
        )
    with transaction.atomic():
        _delete_missing(set(seen))
        Usage.objects.bulk_create(
            seen.values(),
            batch_size=500,
            update_conflicts=True,
            unique_fields=["server_id"],
            update_fields=[
                "customer",
                "image",
                "version",
                "zone",
                "server_name",
                "provider_image_id",
                "last_seen",
            ],
        )
    refresh.ok = True
    refresh.servers_seen = len(servers)
    refresh.usages_kept = len(seen)
    refresh.message = (
        f"{len(servers)} servers seen, {len(seen)} run our images for known customers; "
        f"{unknown_image} run other images, {unknown_customer} belong to unknown projects."
    )
    refresh.finished_at = timezone.now()
    refresh.save()
    return refresh


def _delete_missing(seen: set[str]) -> None:
    # Compared in Python: a large inventory would make a NOT IN list past SQLite's limits.
    gone = [
        pk
        for pk, server_id in Usage.objects.values_list("pk", "server_id")
        if server_id not in seen
    ]
    for start in range(0, len(gone), 500):
        Usage.objects.filter(pk__in=gone[start : start + 500]).delete()
