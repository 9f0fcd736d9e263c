"""Shared helpers of the Instance v1 modules: zones, record loading (with lazy transitions),
rendering, project filters, tasks and kinds."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from localcloud.http import ApiError, Request, invalid_argument, invalid_request, not_found
from localcloud.machines import MachineBackend
from localcloud.machines.timer import TimerBackend

BASE = "/instance/v1/zones/{zone}"
ZONES = tuple(f"{r}-{n}" for r in ("fr-par", "nl-ams", "pl-waw") for n in (1, 2, 3))
ZONE_SHAPE = re.compile(r"^[a-z]{2}-[a-z]{3}-[1-9]$")
NAME_SHAPE = re.compile(r"^[A-Za-z0-9_.\-]+$")

# Store kinds (what the operator's inventory shows).
SERVER = "instance_server"
IMAGE = "instance_image"
SNAPSHOT = "instance_snapshot"
VOLUME = "instance_volume"
SECURITY_GROUP = "instance_security_group"
RULE = "instance_security_group_rule"
IP = "instance_ip"
PRIVATE_NIC = "instance_private_nic"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def check_zone(zone: str) -> str:
    """A well-formed unknown zone is 404 (no such location); a malformed one is 400."""
    if zone in ZONES:
        return zone
    if ZONE_SHAPE.match(zone):
        raise ApiError(404, "not_found", f"zone {zone} is not available", resource="zone")
    raise invalid_argument("zone", "invalid_zone", f"{zone!r} is not a zone")


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def machines(cloud: Any) -> MachineBackend:
    """The machine backend: `cloud.machines` if set (the QEMU backend), else a timer."""
    backend = getattr(cloud, "machines", None)
    if backend is None:
        backend = TimerBackend(cloud.clock.timestamp, getattr(cloud, "transition_seconds", None))
        cloud.machines = backend
    return backend


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The API view of a stored record: private `_fields` stripped."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def settle(cloud: Any, kind: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """Apply due transitions to a record; persist it; None if it disappeared."""
    backend = machines(cloud)
    if backend.advance(record):
        if record.get("_gone"):
            on_gone = record.get("_on_gone")
            cloud.store.delete(kind, record["id"])
            if on_gone:
                _GONE_HOOKS[on_gone](cloud, record)
            return None
        record["modification_date"] = cloud.clock.iso()
        cloud.store.put(kind, record)
    return record


F = TypeVar("F", bound=Callable[..., Any])

# Cleanup callbacks run when a record disappears through a transition (terminate).
_GONE_HOOKS: dict[str, Any] = {}


def on_gone(name: str) -> Callable[[F], F]:
    """Register a cleanup run when a record with `_on_gone = name` disappears."""

    def decorate(func: F) -> F:
        _GONE_HOOKS[name] = func
        return func

    return decorate


def load(cloud: Any, kind: str, zone: str, id_: str, resource: str | None = None) -> dict[str, Any]:
    """A record of this zone, with due transitions applied, or the real 404."""
    record = cloud.store.get(kind, id_)
    if record is not None and record.get("zone") == zone:
        record = settle(cloud, kind, record)
        if record is not None:
            return record
    raise not_found(resource or kind, id_)


def load_all(cloud: Any, kind: str, zone: str) -> list[dict[str, Any]]:
    """Every record of this zone, settled (lists apply transitions too)."""
    items = []
    for record in cloud.store.all(kind, lambda r: r.get("zone") == zone):
        record = settle(cloud, kind, record)
        if record is not None:
            items.append(record)
    return items


def filter_owner(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `project` / `organization` query filters the SDK adds from its defaults."""
    for field in ("project", "organization"):
        wanted = request.arg(field)
        if wanted:
            items = [i for i in items if i.get(field) == wanted]
    return items


def filter_name(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`name` filters by substring, as on Scaleway."""
    name = request.arg("name")
    return [i for i in items if name in i.get("name", "")] if name else items


def filter_tags(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every requested tag must be present (tags come comma-joined from the SDK)."""
    tags = request.list_arg("tags")
    return [i for i in items if set(tags) <= set(i.get("tags") or [])] if tags else items


def owner(body: dict[str, Any]) -> dict[str, Any]:
    """`project` / `organization` as the body gives them (one defaults to the other)."""
    project = body.get("project") or body.get("organization") or ZERO_UUID
    organization = body.get("organization") or project
    return {"project": project, "organization": organization}


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not name or not NAME_SHAPE.match(name):
        raise invalid_argument(
            field, "invalid_name", "letters, digits, dashes, underscores and dots only"
        )
    return name


def check_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise invalid_argument("tags", "invalid_list", "a list of strings")
    return tags


def require(body: dict[str, Any], field: str) -> Any:
    value = body.get(field)
    if value is None or value == "":
        raise invalid_argument(field)
    return value


def task(cloud: Any, zone: str, href_from: str, href_result: str) -> dict[str, Any]:
    """The Task the real API answers to actions and snapshots: the all-zero id and the
    description "fake task", whatever the action (every recorded answer, 2024-2026)."""
    return {
        "id": ZERO_UUID,
        "description": "fake task",
        "status": "pending",
        "href_from": href_from,
        "href_result": href_result,
        "started_at": cloud.clock.iso(),
        "terminated_at": None,
        "progress": 0,
        "zone": zone,
    }


def refuse(message: str) -> ApiError:
    return invalid_request(message)
