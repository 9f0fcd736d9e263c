"""Audit Trail v1alpha1 (`/audit-trail/v1alpha1/regions/{region}/events`): the events of the
calls localcloud records (today the Instance server actions, what the Terraform provider
reads back), in the recorded shape: `{"events": [...]}`, newest first by default.

Hook published by `install(cloud)`: `audit_record(zone, method_name, request, status,
resource)`, where `resource` is `{"id", "type", "name", "created_at"}`.
"""

from __future__ import annotations

import json
from typing import Any

from localcloud.http import Request, Response, new_id, ok

EVENT = "audit_event"
BASE = "/audit-trail/v1alpha1/regions/{region}/events"
PRINCIPAL = "00000000-0000-0000-0000-000000000000"
SERVICES = {"instance": "scaleway.instance.v1.Api"}


def record(
    cloud: Any,
    zone: str,
    method_name: str,
    request: Request,
    status: int,
    resource: dict[str, Any],
) -> None:
    """Store one event of a call that changed `resource`."""
    try:
        body = json.loads(request.body) if request.body else {}
    except ValueError:
        body = {}
    product = request.path.strip("/").split("/", 1)[0]
    project = resource.get("project")
    cloud.store.put(
        EVENT,
        {
            "id": new_id(),
            "recorded_at": cloud.clock.iso(),
            "locality": zone,
            "principal": {"id": PRINCIPAL},
            "organization_id": resource.get("organization") or project,
            "project_id": project,
            "source_ip": "127.0.0.1",
            "user_agent": request.headers.get("user-agent", ""),
            "product_name": product,
            "service_name": SERVICES.get(product, product),
            "method_name": method_name,
            "request_id": new_id(),
            "request_body": body,
            "status_code": status,
            "resources": [
                {
                    "id": resource["id"],
                    "type": resource["type"],
                    "created_at": resource.get("created_at"),
                    "updated_at": None,
                    "deleted_at": None,
                    "name": resource.get("name"),
                }
            ],
            "_region": zone.rsplit("-", 1)[0],
        },
    )


def list_events(cloud: Any, request: Request, region: str) -> Response:
    events = cloud.store.all(EVENT, lambda e: e["_region"] == region)
    for field in ("method_name", "product_name", "project_id", "organization_id"):
        wanted = request.arg(field)
        if wanted:
            events = [e for e in events if e.get(field) == wanted]
    for field, key in (("resource_id", "id"), ("resource_type", "type")):
        wanted = request.arg(field)
        if wanted:
            events = [e for e in events if any(r[key] == wanted for r in e["resources"])]
    events.sort(
        key=lambda e: e["recorded_at"], reverse=request.arg("order_by") != "recorded_at_asc"
    )
    size = request.int_arg("page_size", 100, maximum=1000)
    return ok({"events": [{k: v for k, v in e.items() if k[0] != "_"} for e in events[:size]]})


def install(cloud: Any) -> None:
    """Publish `audit_record` (see the module docstring)."""
    cloud.add_hook(
        "audit_record",
        lambda zone, method_name, request, status, resource: record(
            cloud, zone, method_name, request, status, resource
        ),
    )


def register(router: Any) -> None:
    router.add("GET", BASE, list_events)
