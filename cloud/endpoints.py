"""Where a test run reaches a server from outside: the one place that knows which cloud it is.

On Scaleway a server is reached at its public IPv4 on port 22, and its public DNS name
(`<id>.pub.instances.scw.cloud`) is published. localcloud runs servers as local VMs: each
public IPv4 is a loopback address whose forwarded ports its operator route
`/localcloud/v1/zones/{zone}/servers/{id}/endpoint?port=22` names, and no public DNS name is
published. Which cloud answers is found once per API URL (localcloud answers
`GET /localcloud/v1/endpoints` with 200, Scaleway does not) and remembered; nothing above
this module branches on the cloud.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from django.conf import settings

from cloud import clients
from cloud.retries import CloudError, call

OPERATOR_PREFIX = "/localcloud/v1"
SSH_PORT = 22

_known: dict[str, bool] = {}
_lock = threading.Lock()


def _api_url() -> str:
    return str(clients.client().api_url).rstrip("/")


def is_localcloud() -> bool:
    """True when SCW_API_URL points at localcloud (probed once per URL, then cached)."""
    url = _api_url()
    with _lock:
        if url in _known:
            return _known[url]
    timeout = float(settings.CLOUD_REQUEST_TIMEOUT_SECONDS)
    try:
        answer = requests.get(f"{url}{OPERATOR_PREFIX}/endpoints", timeout=min(timeout, 10.0))
    except requests.RequestException as exc:
        # Not cached: a cloud that cannot be reached now may answer on the next call.
        raise CloudError(f"cannot reach the API at {url} ({type(exc).__name__})") from exc
    found = answer.status_code == 200
    with _lock:
        _known[url] = found
    return found


def _server(zone: str, server: Any) -> Any:
    """The SDK Server for a server or its id."""
    if not isinstance(server, str):
        return server
    api = clients.instance_api()
    return call(api.get_server, server_id=server, zone=zone, what=f"get server {server}").server


def _public_ipv4(server: Any) -> str:
    for ip in getattr(server, "public_ips", None) or []:
        family = str(getattr(ip, "family", "") or "")
        if family in ("inet", "IpFamily.INET") and getattr(ip, "address", None):
            return str(ip.address)
    legacy = getattr(server, "public_ip", None)
    if legacy is not None and getattr(legacy, "address", None) and ":" not in legacy.address:
        return str(legacy.address)
    raise CloudError(f"server {server.id} has no public IPv4 address")


def ssh_endpoint(zone: str, server: Any, port: int = SSH_PORT) -> tuple[str, int]:
    """(host, port) at which the test host reaches `port` of a server (an SDK Server or id)."""
    if is_localcloud():
        server_id = server if isinstance(server, str) else server.id
        url = f"{_api_url()}{OPERATOR_PREFIX}/zones/{zone}/servers/{server_id}/endpoint"
        try:
            answer = requests.get(url, params={"port": port}, timeout=10)
        except requests.RequestException as exc:
            raise CloudError(
                f"endpoint of server {server_id}: cannot reach the API ({type(exc).__name__})"
            ) from exc
        if answer.status_code != 200:
            try:
                message = answer.json().get("message") or answer.text
            except ValueError:
                message = answer.text
            raise CloudError(
                f"endpoint of server {server_id} port {port}: {message} "
                f"[HTTP {answer.status_code}]",
                status=answer.status_code,
            )
        data = answer.json()
        return str(data["host"]), int(data["port"])
    return _public_ipv4(_server(zone, server)), port


def public_dns_name(zone: str, server: Any) -> str | None:
    """The server's public DNS name, or None where the cloud publishes none (localcloud)."""
    if is_localcloud():
        return None
    found = _server(zone, server)
    return str(getattr(found, "dns", "") or "") or f"{found.id}.pub.instances.scw.cloud"
