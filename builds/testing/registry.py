"""The one place checks are registered: an ordered list of module names under `checks/`.

Adding a check is one module (`NAME`, `LABEL`, `SHARED`, `run(ctx)`) plus one line here.
The order matters for the checks with `SHARED = True`: they run one after the other on the
zone's shared server, in this order (the ones that restart the server come last, so an
early failure of the server does not hide the simpler checks).
"""

from __future__ import annotations

import importlib
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
