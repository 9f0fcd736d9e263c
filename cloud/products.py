"""The Instance types a zone offers, and which of them boot from which kind of storage.

A Marketplace local image names the commercial types it is compatible with. Which types those
are depends on the storage its root volume lives on, and the cloud says which types have
which storage in `GET /instance/v1/zones/{zone}/products/servers`:

- local storage (`instance_local`): the type accepts local volumes, i.e. its
  `volumes_constraint.max_size` (or `per_volume_constraint.l_ssd.max_size`) is above zero;
  PLAY2, PRO2, POP2 and COPARM1 have 0 there and boot only from Block Storage;
- Block Storage (`instance_sbs`): the type's `capabilities.block_storage` is true.

No list of types is written down here: the product list is the only source, read once per
zone (`server_types`) and then matched against each local image (`compatible_types`).
A type past its end of service is never offered for a new image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloud import clients
from cloud.retries import CloudError, call

LOCAL = "instance_local"
SBS = "instance_sbs"
STORAGE_TYPES = (LOCAL, SBS)
PER_PAGE = 100  # the largest page the Instance API serves


@dataclass(frozen=True)
class ServerType:
    """What the factory needs to know of one commercial type."""

    name: str
    arch: str
    local_storage: bool
    block_storage: bool
    end_of_service: bool = False

    def boots_from(self, storage_type: str) -> bool:
        """Whether a server of this type boots a root volume on `storage_type`."""
        return self.local_storage if storage_type == LOCAL else self.block_storage


def _max_size(constraint: Any) -> int:
    return int(getattr(constraint, "max_size", 0) or 0) if constraint is not None else 0


def _of(name: str, product: Any) -> ServerType:
    per_volume = getattr(product, "per_volume_constraint", None)
    l_ssd = getattr(per_volume, "l_ssd", None) if per_volume is not None else None
    local = max(_max_size(getattr(product, "volumes_constraint", None)), _max_size(l_ssd)) > 0
    capabilities = getattr(product, "capabilities", None)
    return ServerType(
        name=name.upper(),
        arch=str(product.arch),
        local_storage=local,
        block_storage=bool(getattr(capabilities, "block_storage", False)),
        end_of_service=bool(getattr(product, "end_of_service", False)),
    )


def server_types(zone: str) -> list[ServerType]:
    """Every commercial type `zone` offers, by name, read through the Instance API (all its
    pages). Raises CloudError, in words, when the list cannot be read or is empty."""
    api = clients.instance_v1_api()
    what = f"list the Instance types of {zone}"
    found: dict[str, ServerType] = {}
    page = 1
    while True:
        answer = call(api.list_servers_types, zone=zone, page=page, per_page=PER_PAGE, what=what)
        servers = answer.servers or {}
        for name, product in servers.items():
            found[name.upper()] = _of(name, product)
        total = int(answer.total_count or 0)
        if not servers or len(servers) < PER_PAGE or (total and len(found) >= total):
            break
        page += 1
    if not found:
        raise CloudError(f"{what}: the API lists no Instance type in {zone}.")
    return [found[name] for name in sorted(found)]


def compatible_types(
    types: Iterable[ServerType], storage_type: str, arch: str, allowed: Iterable[str] = ()
) -> list[str]:
    """The names of `types` that boot a local image on `storage_type` of architecture `arch`,
    kept to `allowed` (upper-case names) when it names any: an empty `allowed` restricts
    nothing. Sorted by name."""
    if storage_type not in STORAGE_TYPES:
        raise CloudError(
            f"Unknown storage type {storage_type!r}: it is one of {', '.join(STORAGE_TYPES)}."
        )
    wanted = {name.strip().upper() for name in allowed if name.strip()}
    return sorted(
        t.name
        for t in types
        if t.boots_from(storage_type)
        and t.arch == arch
        and not t.end_of_service
        and (not wanted or t.name in wanted)
    )
