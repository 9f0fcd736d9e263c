"""The localcloud process: one HTTP server for every API, dispatching to the API modules.

API modules (localcloud/api/*.py) and the operator module each expose `register(router)`;
the dispatcher checks authentication (Marketplace is public, as on Scaleway), applies armed
faults, calls the handler and always answers JSON errors.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localcloud.clock import Clock
from localcloud.faults import Faults
from localcloud.http import ApiError, Request, Response, Router, is_uuid
from localcloud.machines import selected
from localcloud.machines.timer import default_transition_seconds
from localcloud.store import Store

log = logging.getLogger("localcloud")

# Each module registers its routes; the order does not matter.
API_MODULES = [
    "localcloud.api.instance",
    "localcloud.api.block",
    "localcloud.api.vpc",
    "localcloud.api.ipam",
    "localcloud.api.marketplace",
    "localcloud.api.audit_trail",
    "localcloud.operator",
]
OPERATOR_PREFIX = "/localcloud/v1/"


class LocalCloud:
    """The whole cloud: state, clock, faults, routes, the S3 endpoints per region, and the
    machine backend (`machines`: "timer", the default, or "qemu"; LOCALCLOUD_MACHINES)."""

    def __init__(
        self,
        state_dir: Path,
        s3_endpoints: dict[str, str] | None = None,
        machines: str | None = None,
    ) -> None:
        self.store = Store(state_dir)
        self.clock = Clock(self.store)
        self.faults = Faults()
        self.router = Router()
        self.s3_endpoints = dict(s3_endpoints or {})
        self.lock = threading.RLock()
        # How long each server/snapshot/NIC transition takes (LOCALCLOUD_TRANSITION_SECONDS).
        self.transition_seconds = default_transition_seconds()
        # Cross-module hooks by name (e.g. "block_volume_attached"): modules that define
        # `install(cloud)` fill them, so that API modules call each other without imports.
        self.hooks: dict[str, Callable[..., Any]] = {}
        modules = []
        for name in API_MODULES:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise
                continue  # an API not written yet
            module.register(self.router)
            modules.append(module)
        for module in modules:
            install = getattr(module, "install", None)
            if install is not None:
                install(self)
        # The machine backend; None lets the Instance API make its timer on first use.
        self.machines: Any = None
        choice = (machines or selected()).lower()
        if choice == "qemu":
            from localcloud.machines import qemu

            backend = qemu.QemuBackend(self)
            qemu.install(self, backend)
            self.machines = backend
            backend.start()
        elif choice != "timer":
            raise ValueError(f"unknown machine backend {choice!r} (timer or qemu)")

    def shutdown(self) -> None:
        """Stop what runs behind the API (VMs, their networks, the metadata service)."""
        stop = getattr(self.machines, "shutdown", None)
        if stop is not None:
            stop()

    def on_reset(self) -> None:
        """The operator's reset, before the records go: running machines go first."""
        reset = getattr(self.machines, "reset", None)
        if reset is not None:
            reset()

    def add_hook(self, name: str, fn: Callable[..., Any]) -> None:
        """Publish a hook both as `cloud.hooks[name]` and as the attribute `cloud.<name>`."""
        self.hooks[name] = fn
        setattr(self, name, fn)

    def handle(self, request: Request) -> Response:
        try:
            route, params = self.router.match(request.method, request.path)
            request.path_params = params
            request.operation = f"{route.method} {route.template}"
            if not route.public and not request.path.startswith(OPERATOR_PREFIX):
                _authenticate(request)
            injected = self.faults.apply(request.operation, params.get("zone"))
            if injected is not None:
                return injected
            return route.handler(self, request, **params)
        except ApiError as exc:
            return Response(status=exc.status, body=exc.body)
        except Exception as exc:  # a bug must still answer JSON, as the SDK expects
            log.exception("unhandled error on %s %s", request.method, request.path)
            return Response(status=500, body={"type": "internal_error", "message": str(exc)})


def _authenticate(request: Request) -> None:
    token = request.headers.get("x-auth-token", "")
    if not token or not is_uuid(token):
        raise ApiError(
            401,
            "denied_authentication",
            "authentication is denied",
            method="api_key",
            reason="invalid_argument" if token else "not_found",
        )


class _Handler(BaseHTTPRequestHandler):
    server_version = "localcloud"
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request.parse(self.command, self.path, dict(self.headers.items()), body)
        response = self.server.cloud.handle(request)  # type: ignore[attr-defined]
        payload = response.encode()
        self.send_response(response.status)
        if payload or response.status != 204:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def make_server(cloud: LocalCloud, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.cloud = cloud  # type: ignore[attr-defined]
    return server
