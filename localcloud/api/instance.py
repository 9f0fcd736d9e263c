"""Instance v1 API (`/instance/v1/zones/{zone}/...`): the entry point that registers the
instance_* modules. Every handler is wrapped so that the zone is checked first and the
read-modify-write of records happens under the cloud's lock."""

from __future__ import annotations

import functools
from typing import Any

from localcloud.api import (
    instance_interfaces,
    instance_network,
    instance_servers,
    instance_storage,
)
from localcloud.api.instance_common import check_zone
from localcloud.http import Request, Response, Router


def _wrap(handler: Any) -> Any:
    @functools.wraps(handler)
    def wrapped(cloud: Any, request: Request, zone: str, **params: str) -> Response:
        check_zone(zone)
        with cloud.lock:
            response: Response = handler(cloud, request, zone, **params)
            return response

    return wrapped


def register(router: Router) -> None:
    """Register images, snapshots, volumes, servers, security groups, IPs and NICs (v1),
    and the v2alpha1 private network interfaces."""
    instance_servers.register(router, _wrap)
    instance_storage.register(router, _wrap)
    instance_network.register(router, _wrap)
    instance_interfaces.register(router, _wrap)
