"""Hot snapshot: a snapshot of a running server's root volume (taken after `sync`) boots with
the data in it."""

from __future__ import annotations

from builds.testing.harness import CheckContext
from builds.testing.snapshots import snapshot_and_boot

NAME = "hot_snapshot"
LABEL = "Hot snapshot"
SHARED = False


def run(ctx: CheckContext) -> None:
    snapshot_and_boot(ctx, cold=False)
