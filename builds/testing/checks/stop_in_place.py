"""Stop in place: standby and back keeps the disk and brings the guest back.

A file written and synced before `stop_in_place` is still there after `poweron`, and SSH and
the network answer again. Standby keeps the machine's slot, so the guest may resume the same
boot (localcloud pauses the VM's vCPUs) or boot again: the boot id is logged, not asserted.
"""

from __future__ import annotations

from builds.testing.harness import STOPPED_IN_PLACE, CheckContext
from builds.testing.powercycle import stop_and_start

NAME: str = "stop_in_place"
LABEL: str = "Stop in place"
SHARED: bool = True
SOURCE_STATE: str = ""


def run(ctx: CheckContext) -> None:
    assert ctx.server is not None
    stop_and_start(
        ctx, ctx.server, "stop_in_place", STOPPED_IN_PLACE, what="stop in place", new_boot=False
    )
