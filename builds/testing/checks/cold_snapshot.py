"""Cold snapshot: a snapshot of a stopped server's root volume boots with the data in it."""

from __future__ import annotations

from builds.testing.harness import CheckContext
from builds.testing.snapshots import snapshot_and_boot

NAME = "cold_snapshot"
LABEL = "Cold snapshot"
SHARED = False


def run(ctx: CheckContext) -> None:
    snapshot_and_boot(ctx, cold=True)
