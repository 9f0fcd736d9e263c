"""Stop in place: standby and back keeps the disk and restarts the guest.

A file written and synced before `stop_in_place` is still there after `poweron`, and the
boot id changed (the guest really went down).
"""

from __future__ import annotations

from builds.testing.harness import STOPPED_IN_PLACE, CheckContext
from builds.testing.powercycle import stop_and_start

NAME = "stop_in_place"
LABEL = "Stop in place"
SHARED = True


def run(ctx: CheckContext) -> None:
    assert ctx.server is not None
    stop_and_start(ctx, ctx.server, "stop_in_place", STOPPED_IN_PLACE, what="stop in place")
