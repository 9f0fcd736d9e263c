"""Stopping a server one way or another and starting it again, for the checks that do so."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from builds.testing.harness import RUNNING, CheckContext
from builds.testing.outcomes import CheckFailed


def stop_and_start(
    ctx: CheckContext,
    server_id: str,
    action: str,
    stopped: Collection[str],
    *,
    what: str,
    new_boot: bool = True,
    stopped_hook: Callable[[], None] | None = None,
) -> None:
    """Write a file, stop with `action`, power on: the file survives and the guest answers
    again; with `new_boot`, the boot id changed too (the guest really went down).
    `stopped_hook` asserts what must hold while the server is stopped.

    Standby (stop in place) keeps the machine's slot: a cloud may resume the same boot or
    boot again, so there only the file and the guest's return are asserted."""
    token = ctx.write_marker(server_id)
    before = ctx.boot_id(server_id)
    ctx.act(server_id, action, stopped)
    if stopped_hook is not None:
        stopped_hook()
    ctx.act(server_id, "poweron", RUNNING)
    started = time.monotonic()  # running: the guest boots (or resumes) from here
    if new_boot:
        after = ctx.wait_for_new_boot(server_id, before, after=what, started=started)
    else:
        ctx.wait_ssh(server_id, started=started)
        after = ctx.boot_id(server_id)
    ctx.log(f"boot id {before} -> {after}" + (" (resumed)" if after == before else ""))
    found = ctx.read_marker(server_id)
    if found != token:
        raise CheckFailed(f"the file written before {what} did not survive it")
