"""Archive: power off (the hypervisor released) and back.

A file written and synced before `poweroff` is still there after `poweron`, and the boot id
changed.

On local storage, powering off archives the local volumes. A server with a Block root has no
local volume to archive: there the check asserts what powering off means for it instead. The
server ends `stopped` (not stopped in place) and no longer sits on a node (its `location` is
cleared, when the cloud shows one while it runs), while its Block root stays attached to it,
the same volume, `in_use` in the Block API; after power on, the data is still there.
"""

from __future__ import annotations

from typing import Any

from builds.testing.harness import BLOCK_VOLUME, STOPPED, CheckContext
from builds.testing.outcomes import CheckFailed
from builds.testing.powercycle import stop_and_start

NAME: str = "archive"
LABEL: str = "Archive"
SHARED: bool = True
SOURCE_STATE: str = ""

WHAT = "power off (archive)"


def run(ctx: CheckContext) -> None:
    assert ctx.server is not None
    if not ctx.spec.block:
        stop_and_start(ctx, ctx.server, "poweroff", STOPPED, what=WHAT)
        return
    server_id = ctx.server
    running = ctx.get_server(server_id)
    root = ctx.root_volume(server_id)
    attached_to(ctx, server_id, root.id, when="before power off")
    placed = _node(running)

    def while_stopped() -> None:
        stopped = ctx.get_server(server_id)
        if str(stopped.state) != "stopped":
            raise CheckFailed(f"the server is {stopped.state} after power off, not stopped")
        if placed:
            still = _node(stopped)
            if still:
                raise CheckFailed(f"the server still holds its node ({still}) after power off")
            ctx.log(f"the server left its node ({placed}) when powered off")
        else:
            ctx.not_applicable(
                "the release of the node: this cloud shows no server location, even running"
            )
        now = ctx.root_volume(server_id)
        if now.id != root.id or str(getattr(now, "volume_type", "")) != BLOCK_VOLUME:
            raise CheckFailed(
                f"the server's root volume changed when powered off ({root.id} -> {now.id})"
            )
        attached_to(ctx, server_id, root.id, when="powered off")

    stop_and_start(ctx, server_id, "poweroff", STOPPED, what=WHAT, stopped_hook=while_stopped)
    attached_to(ctx, server_id, root.id, when="after power on")


def _node(server: Any) -> str:
    """Where the server runs, as the Instance API shows it ("" when it is on no node)."""
    location = getattr(server, "location", None)
    if location is None:
        return ""
    parts = [
        str(getattr(location, key, "") or "")
        for key in ("zone_id", "platform_id", "cluster_id", "hypervisor_id", "node_id")
    ]
    return "/".join(p for p in parts if p)


def attached_to(ctx: CheckContext, server_id: str, volume_id: str, *, when: str) -> None:
    """The Block volume is in use and attached to the server, as the Block API shows it."""
    volume = ctx.block_volume(volume_id)
    servers = [
        str(ref.product_resource_id)
        for ref in (volume.references or [])
        if str(getattr(ref, "product_resource_type", "")) == "instance_server"
    ]
    ctx.log(f"block root {volume_id} {when}: {volume.status}, attached to {', '.join(servers)}")
    if server_id not in servers:
        raise CheckFailed(f"the Block root volume {volume_id} is not attached to the server {when}")
    if str(volume.status) != "in_use":
        raise CheckFailed(
            f"the Block root volume {volume_id} is {volume.status} {when}, not in use"
        )
