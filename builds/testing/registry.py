"""The one place checks are registered: an ordered list of module names under `checks/`.

Adding a check is one module that is a `Check` (`NAME`, `LABEL`, `SHARED`, `SOURCE_STATE`,
`run(ctx)`) plus one line here and one in the type checker's list below.
The order matters for the checks with `SHARED = True`: they run one after the other on the
zone's shared server, in this order (the ones that restart the server come last, so an
early failure of the server does not hide the simpler checks). A check that copies the
source server (`SOURCE_STATE` "running" or "stopped" and `capture(ctx, server_id)`: a
`SourceCheck`, see `source`) gets its copy made in this order too, the running ones first.
The modules are imported on first use: they import the harness, which imports this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from builds.testing.harness import CheckContext

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


class Check(Protocol):
    """What a check module declares."""

    NAME: str  # its name in CHECKS and in the results
    LABEL: str  # what the pages show ("Stop in place")
    SHARED: bool  # runs on the zone's shared server, in the chain
    SOURCE_STATE: str  # "" or, for a SourceCheck, "running" or "stopped"

    def run(self, ctx: CheckContext) -> None: ...


class SourceCheck(Check, Protocol):
    """A check that takes a copy of the source server (see `source`)."""

    def capture(self, ctx: CheckContext, server_id: str) -> Any: ...


if TYPE_CHECKING:
    # Every module of CHECKS, so that the type checker proves each one is a Check.
    from builds.testing.checks import (
        archive,
        backup,
        block_volume,
        cold_snapshot,
        dns,
        hot_snapshot,
        network,
        private_networks,
        reboot,
        rescue,
        security_group,
        stop_in_place,
    )

    _CHECKS: tuple[Check, ...] = (
        network,
        dns,
        security_group,
        block_volume,
        reboot,
        stop_in_place,
        archive,
        private_networks,
        rescue,
    )
    _SOURCE_CHECKS: tuple[SourceCheck, ...] = (cold_snapshot, hot_snapshot, backup)


def names() -> list[str]:
    return list(CHECKS)


def get(name: str) -> Check:
    """The module of a registered check; KeyError for a name that is not registered."""
    if name not in CHECKS:
        raise KeyError(name)
    return cast(Check, importlib.import_module(f"{PACKAGE}.{name}"))


def get_source_check(name: str) -> SourceCheck:
    """The module of a registered check that copies the source server (`SOURCE_STATE` set);
    KeyError for any other name."""
    check = get(name)
    if not check.SOURCE_STATE:
        raise KeyError(name)
    return cast(SourceCheck, check)


def modules() -> list[Check]:
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
    source = [n for n in known if get(n).SOURCE_STATE]
    source.sort(key=lambda n: get(n).SOURCE_STATE != "running")
    return {SHARED: chain, SOURCE: source}
