"""The usage source: which servers run which image, in every project we can see.

Two backends behind one port (`UsageSource.servers()`):
- localcloud: its operator inventory (GET {SCW_API_URL}/localcloud/v1/inventory), which
  lists every resource of every project;
- Scaleway: `list_servers_all` per zone in every project the credentials can see (the
  Account API lists the projects of SCW_DEFAULT_ORGANIZATION_ID).

USAGE_SOURCE=localcloud|scaleway chooses; unset, SCW_API_URL pointing anywhere but
api.scaleway.com means localcloud.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import requests

from cloud import clients
from cloud.retries import CloudError

SCALEWAY_API = "https://api.scaleway.com"
DEFAULT_ZONES = ("fr-par-1", "fr-par-2", "fr-par-3", "nl-ams-1", "nl-ams-2", "nl-ams-3")


@dataclass(frozen=True)
class ServerUsage:
    """One server as the cloud reports it: where it runs, whose it is, what it booted."""

    server_id: str
    name: str
    zone: str
    project_id: str
    organization_id: str
    image_id: str


class UsageSource(Protocol):
    """Lists every server the factory may notify about."""

    name: str

    def servers(self) -> Iterator[ServerUsage]: ...


class LocalCloudUsage:
    """localcloud's operator inventory: every project at once."""

    name = "localcloud"

    def __init__(self, api_url: str, timeout: float = 30) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def servers(self) -> Iterator[ServerUsage]:
        url = f"{self.api_url}/localcloud/v1/inventory"
        try:
            response = requests.get(url, timeout=self.timeout)
            response.raise_for_status()
            inventory = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise CloudError(f"localcloud's inventory cannot be read: {exc}") from exc
        for server in inventory.get("instance_server", []):
            image = server.get("image") or {}
            yield ServerUsage(
                server_id=str(server.get("id", "")),
                name=str(server.get("name", "")),
                zone=str(server.get("zone", "")),
                project_id=str(server.get("project", "")),
                organization_id=str(server.get("organization", "")),
                image_id=str(image.get("id", "")) if isinstance(image, dict) else "",
            )


class ScalewayUsage:
    """Scaleway: servers listed per zone in every project the credentials can see."""

    name = "scaleway"

    def __init__(self, zones: tuple[str, ...] = DEFAULT_ZONES) -> None:
        self.zones = zones

    def _projects(self) -> list[str]:
        from scaleway.account.v3 import AccountV3ProjectAPI

        scw = clients.client()
        if not scw.default_organization_id:
            # Without an organization the Account API cannot list projects: the default
            # project is all we can see.
            return [scw.default_project_id or ""]
        projects = AccountV3ProjectAPI(scw).list_projects_all(
            organization_id=scw.default_organization_id
        )
        return [project.id for project in projects]

    def servers(self) -> Iterator[ServerUsage]:
        api = clients.instance_v1_api()
        try:
            for project in self._projects():
                for zone in self.zones:
                    for server in api.list_servers_all(zone=zone, project=project):
                        yield ServerUsage(
                            server_id=server.id,
                            name=server.name,
                            zone=str(server.zone),
                            project_id=server.project,
                            organization_id=server.organization,
                            image_id=server.image.id if server.image else "",
                        )
        except CloudError:
            raise
        except Exception as exc:  # the SDK raises several unrelated types
            raise CloudError(f"Scaleway's servers cannot be listed: {exc}") from exc


def usage_source() -> UsageSource:
    """The backend the environment points at."""
    choice = os.environ.get("USAGE_SOURCE", "").strip().lower()
    api_url = os.environ.get("SCW_API_URL", "").strip()
    if not choice:
        choice = "localcloud" if api_url and api_url.rstrip("/") != SCALEWAY_API else "scaleway"
    if choice == "localcloud":
        if not api_url:
            raise CloudError("USAGE_SOURCE=localcloud needs SCW_API_URL.")
        return LocalCloudUsage(api_url)
    if choice == "scaleway":
        zones = tuple(z.strip() for z in os.environ.get("USAGE_ZONES", "").split(",") if z.strip())
        return ScalewayUsage(zones or DEFAULT_ZONES)
    raise CloudError(f"USAGE_SOURCE must be localcloud or scaleway, not {choice!r}.")
