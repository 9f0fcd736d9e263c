"""Operator endpoints under /localcloud/v1/ (not part of Scaleway's public API): reset,
inventory, fault injection, the clock offset, the S3 endpoints, and where the host reaches a
server's port (`GET zones/{zone}/servers/{id}/endpoint?port=22` -> {"host", "port"}, 404 when
the machine backend forwards nothing there, e.g. the timer backend or a port its security
group drops). Marketplace publishing (the provider's internal business on Scaleway) lives in
localcloud.api.marketplace."""

from __future__ import annotations

from typing import Any

from localcloud import machines as machine_capabilities
from localcloud.api import audit_trail
from localcloud.api.instance_common import SERVER, machines
from localcloud.faults import Fault
from localcloud.http import ApiError, Request, Response, Router, invalid_argument, not_found, ok

PREFIX = "/localcloud/v1"


def reset(cloud: Any, request: Request) -> Response:
    cloud.faults.clear()
    on_reset = getattr(cloud, "on_reset", None)
    if on_reset:
        on_reset()
    cloud.store.reset()
    return ok({"reset": True})


def inventory(cloud: Any, request: Request) -> Response:
    """Every resource of every project, by kind (what a usage source or a test counts).
    Audit events are the cloud's record of calls, not resources: nobody creates or deletes
    them, so they are not listed."""
    kinds = sorted(set(cloud.store.kinds()) - {audit_trail.EVENT})
    return ok({kind: cloud.store.all(kind) for kind in kinds})


def list_faults(cloud: Any, request: Request) -> Response:
    return ok({"faults": cloud.faults.describe()})


def add_fault(cloud: Any, request: Request) -> Response:
    data = request.json()
    if not data.get("operation"):
        raise invalid_argument(
            "operation", help_message='e.g. "POST /instance/v1/zones/{zone}/snapshots" or "*"'
        )
    try:
        fault = Fault(
            operation=data["operation"],
            count=int(data.get("count", 1)),
            status=int(data.get("status", 503)),
            retry_after=data.get("retry_after"),
            delay=float(data.get("delay", 0)),
            message=str(data.get("message", "injected fault")),
            zone=str(data["zone"]) if data.get("zone") else None,
            body=data.get("body"),
        )
        if fault.body is not None and not isinstance(fault.body, dict):
            raise ValueError("body must be a JSON object")
    except (TypeError, ValueError) as exc:
        raise invalid_argument("fault", "invalid", str(exc)) from exc
    cloud.faults.arm(fault)
    return ok({"faults": cloud.faults.describe()})


def clear_faults(cloud: Any, request: Request) -> Response:
    cloud.faults.clear()
    return ok({"faults": []})


def get_clock(cloud: Any, request: Request) -> Response:
    return ok({"offset_seconds": cloud.clock.offset, "now": cloud.clock.iso()})


def set_clock(cloud: Any, request: Request) -> Response:
    data = request.json()
    try:
        cloud.clock.set_offset(float(data.get("offset_seconds", 0)))
    except (TypeError, ValueError) as exc:
        raise invalid_argument("offset_seconds", "invalid", str(exc)) from exc
    return get_clock(cloud, request)


def endpoints(cloud: Any, request: Request) -> Response:
    return ok({"s3": cloud.s3_endpoints})


def server_endpoint(cloud: Any, request: Request, zone: str, server_id: str) -> Response:
    server = cloud.store.get(SERVER, server_id)
    if server is None or server.get("zone") != zone:
        raise not_found("instance_server", server_id)
    port = request.int_arg("port", 22, maximum=65535)
    found = machine_capabilities.endpoint(machines(cloud), server_id, port)
    if found is None:
        raise ApiError(
            404,
            "not_found",
            f"port {port} of server {server_id} is not reachable from the host",
            resource="endpoint",
            resource_id=f"{server_id}:{port}",
        )
    return ok(found)


def register(router: Router) -> None:
    router.add("POST", f"{PREFIX}/reset", reset)
    router.add("GET", f"{PREFIX}/inventory", inventory)
    router.add("GET", f"{PREFIX}/faults", list_faults)
    router.add("POST", f"{PREFIX}/faults", add_fault)
    router.add("DELETE", f"{PREFIX}/faults", clear_faults)
    router.add("GET", f"{PREFIX}/clock", get_clock)
    router.add("PUT", f"{PREFIX}/clock", set_clock)
    router.add("GET", f"{PREFIX}/endpoints", endpoints)
    router.add("GET", f"{PREFIX}/zones/{{zone}}/servers/{{server_id}}/endpoint", server_endpoint)
