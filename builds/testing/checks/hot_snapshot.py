"""Hot snapshot: a snapshot of a running server's root volume (taken after `sync`) boots with
the data in it. The server is the run's source server (see `source`)."""

from __future__ import annotations

from builds.testing.harness import CheckContext
from builds.testing.source import boot_from_snapshot, snapshot_root

NAME: str = "hot_snapshot"
LABEL: str = "Hot snapshot"
SHARED: bool = False
SOURCE_STATE: str = "running"

capture = snapshot_root


def run(ctx: CheckContext) -> None:
    boot_from_snapshot(ctx, "hot snapshot")
