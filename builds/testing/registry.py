"""The one place checks are registered: an ordered list of module names under `checks/`.

Adding a check is one module (`NAME`, `LABEL`, `SHARED`, `run(ctx)`) plus one line here.
The order matters for the checks with `SHARED = True`: they run one after the other on the
zone's shared server, in this order (the ones that restart the server come last, so an
early failure of the server does not hide the simpler checks). A check that copies the
source server (`SOURCE_STATE` and `capture(ctx, server_id)`, see `source`) gets its copy made
in this order too, the running ones first.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

CHECKS = (
    "network",
    "dns",
    "security_group",
    "block_volume",
    "reboot",
    "stop_in_place",
    "archive",
    "cold_snapshot",
    "hot_snapshot",
    "backup",
    "rescue",
    "private_networks",
)
PACKAGE = "builds.testing.checks"
# The owners of the resources several checks share (in the ledger, in place of a check name).
SHARED = "shared"  # the zone's long-lived server, which the chained checks run on
SOURCE = "source"  # the server the snapshot and backup checks take their copies of


def names() -> list[str]:
    return list(CHECKS)


def get(name: str) -> ModuleType:
    """The module of a registered check; KeyError for a name that is not registered."""
    if name not in CHECKS:
        raise KeyError(name)
    return importlib.import_module(f"{PACKAGE}.{name}")


def modules() -> list[ModuleType]:
    return [get(name) for name in CHECKS]


def label(name: str) -> str:
    """The check's label ("Stop in place"), or the name itself when it is not registered."""
    try:
        return str(get(name).LABEL)
    except KeyError:
        return name


def groups(names: Iterable[str]) -> dict[str, list[str]]:
    """The checks among `names` behind each shared owner: SHARED, the chain (registry order);
    SOURCE, the checks that copy the source server (those that copy it running first)."""
    known = [n for n in names if n in CHECKS]
    chain = [n for n in known if get(n).SHARED]
    source = [n for n in known if getattr(get(n), "SOURCE_STATE", "")]
    source.sort(key=lambda n: get(n).SOURCE_STATE != "running")
    return {SHARED: chain, SOURCE: source}
