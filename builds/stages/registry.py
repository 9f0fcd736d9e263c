"""The one place stages are registered: an ordered list of module names under `builds.stages`.

Adding a stage is one module (`NAME`, `NEEDS`, `run(ctx)`, `outputs_exist(outputs)`) plus one
line here (and its StageName). The order is the order a build runs them in, the order of
`StageName` (a build's Stage rows are numbered from it).

`NEEDS` names the earlier stages whose outputs (files, cloud resources) a stage reads when it
runs. Recorded values (serial, manifest, version id) are in the database and never gone, so
they are not a need.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STAGES = (
    "fetch",
    "customize",
    "finalize",
    "publish",
    "test",
)
PACKAGE = "builds.stages"


def names() -> list[str]:
    return list(STAGES)


def get(name: str) -> ModuleType:
    """The module of a registered stage; KeyError for a name that is not registered."""
    if name not in STAGES:
        raise KeyError(name)
    return importlib.import_module(f"{PACKAGE}.{name}")


def modules() -> list[ModuleType]:
    return [get(name) for name in STAGES]


def needs() -> dict[str, tuple[str, ...]]:
    """Each stage's NEEDS, by stage name."""
    return {name: tuple(get(name).NEEDS) for name in STAGES}


def outputs_exist(name: str, outputs: dict) -> bool:
    """Whether a done stage's outputs can still be used by the stages after it (restored from
    the artefact store when this machine does not have them)."""
    return bool(get(name).outputs_exist(outputs))
