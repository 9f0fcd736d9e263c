"""Snapshot a server's root volume and boot another server from it, for the snapshot checks."""

from __future__ import annotations

from builds.testing.harness import CheckContext
from builds.testing.outcomes import CheckFailed


def snapshot_and_boot(ctx: CheckContext, *, cold: bool) -> None:
    """Write a file; snapshot the root volume (after poweroff when `cold`, else while
    running); boot a new server whose root volume is made from that snapshot; the file is
    there."""
    kind = "cold" if cold else "hot"
    source = ctx.create_server(f"{kind}-src")
    token = ctx.write_marker(source)
    if cold:
        ctx.power_off(source)
    root = ctx.root_volume(source)
    snapshot = ctx.snapshot_volume(root.id, f"{kind}-snap")
    # The snapshot is all the rest needs: free the source's VM for the other checks.
    ctx.release(source)
    copy = ctx.create_server(f"{kind}-copy", base_snapshot=snapshot.id)
    if ctx.read_marker(copy) != token:
        raise CheckFailed(
            f"the file written before the {kind} snapshot is missing on the server booted from it"
        )
