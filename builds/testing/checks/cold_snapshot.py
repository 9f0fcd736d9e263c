"""Cold snapshot: a snapshot of a stopped server's root volume boots with the data in it. The
server is the run's source server, powered off (see `source`)."""

from __future__ import annotations

from builds.testing.harness import CheckContext
from builds.testing.source import boot_from_snapshot, snapshot_root

NAME: str = "cold_snapshot"
LABEL: str = "Cold snapshot"
SHARED: bool = False
SOURCE_STATE: str = "stopped"

capture = snapshot_root


def run(ctx: CheckContext) -> None:
    boot_from_snapshot(ctx, "cold snapshot")
