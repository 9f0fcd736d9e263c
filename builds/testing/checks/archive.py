"""Archive: power off (local volumes archived, hypervisor released) and back.

A file written and synced before `poweroff` is still there after `poweron`, and the boot id
changed.
"""

from __future__ import annotations

from builds.testing.harness import STOPPED, CheckContext
from builds.testing.powercycle import stop_and_start

NAME: str = "archive"
LABEL: str = "Archive"
SHARED: bool = True
SOURCE_STATE: str = ""


def run(ctx: CheckContext) -> None:
    assert ctx.server is not None
    stop_and_start(ctx, ctx.server, "poweroff", STOPPED, what="power off (archive)")
