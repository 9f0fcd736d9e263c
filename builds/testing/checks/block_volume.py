"""Block volume: an SBS volume hot-plugs into the running guest and goes away cleanly.

A volume made through the Block API and attached to the running server appears in the guest
as a new disk; it takes a filesystem, keeps what is written to it across a remount, and once
detached (and deleted) the guest no longer sees it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scaleway.block.v1 import CreateVolumeRequestFromEmpty

from builds.testing.harness import CheckContext
from builds.testing.outcomes import CheckFailed
from cloud import waiters

NAME: str = "block_volume"
LABEL: str = "Block volume"
SHARED: bool = True
SOURCE_STATE: str = ""

SIZE_BYTES = 5 * 1000**3
GUEST_SECONDS = 120.0  # how long the guest may take to see a disk come or go
MOUNT = "/mnt/factory-block-check"
IGNORED_DISKS = ("loop", "ram", "sr", "zram", "fd", "dm-", "md")


def _disks(ctx: CheckContext, server_id: str) -> set[str]:
    names = ctx.output(server_id, "ls /sys/block", quiet=True).split()
    return {n for n in names if not n.startswith(IGNORED_DISKS)}


def _volume_status(ctx: CheckContext, volume_id: str, until: tuple[str, ...]) -> None:
    block = ctx.block

    def fetch() -> Any:
        return ctx.call(
            block.get_volume,
            what=f"get block volume {volume_id}",
            volume_id=volume_id,
            zone=ctx.zone,
        )

    volume = ctx.wait(
        waiters.wait_for,
        fetch,
        state_of=lambda v: v.status,
        until=until,
        failed=("error",),
        what=f"block volume {volume_id}",
    )
    ctx.log(f"block volume {volume_id} is {volume.status}")


def _wait_guest(ctx: CheckContext, test: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + GUEST_SECONDS
    while not test():
        if time.monotonic() >= deadline:
            raise CheckFailed(failure)
        ctx.sleep(3)


def run(ctx: CheckContext) -> None:
    server_id = ctx.server
    assert server_id is not None
    before = _disks(ctx, server_id)
    ctx.log(f"disks before: {', '.join(sorted(before))}")
    name = ctx.resource_name("block")
    volume = ctx.call(
        ctx.block.create_volume,
        what=f"create block volume {name}",
        zone=ctx.zone,
        name=name,
        perf_iops=5000,
        from_empty=CreateVolumeRequestFromEmpty(size=SIZE_BYTES),
        tags=ctx.tags(),
    )
    ctx.record("block_volume", volume.id, name=name)
    _volume_status(ctx, volume.id, ("available",))
    ctx.call(
        ctx.instance.attach_server_volume,
        what=f"attach block volume {volume.id}",
        zone=ctx.zone,
        server_id=server_id,
        volume_id=volume.id,
        volume_type="sbs_volume",
    )
    attached = True
    try:
        _use(ctx, server_id, volume.id, before)
        attached = False
    finally:
        if attached:
            # Leave the shared server as the next checks expect it: without the volume.
            try:
                _detach(ctx, server_id, volume.id)
            except Exception as exc:
                ctx.log(f"could not detach block volume {volume.id}: {exc}")
    ctx.call(
        ctx.block.delete_volume,
        what=f"delete block volume {volume.id}",
        zone=ctx.zone,
        volume_id=volume.id,
    )
    ctx.forget("block_volume", volume.id)
    ctx.log(f"deleted block volume {volume.id}")


def _detach(ctx: CheckContext, server_id: str, volume_id: str) -> None:
    ctx.call(
        ctx.instance.detach_server_volume,
        what=f"detach block volume {volume_id}",
        zone=ctx.zone,
        server_id=server_id,
        volume_id=volume_id,
    )
    _volume_status(ctx, volume_id, ("available",))


def _use(ctx: CheckContext, server_id: str, volume_id: str, before: set[str]) -> None:
    """From attached to detached: the guest sees the disk, uses it, and sees it go."""
    _volume_status(ctx, volume_id, ("in_use",))
    found: set[str] = set()

    def appeared() -> bool:
        found.clear()
        found.update(_disks(ctx, server_id) - before)
        return bool(found)

    _wait_guest(ctx, appeared, "the guest did not see a new disk after the block volume attached")
    device = f"/dev/{sorted(found)[0]}"
    ctx.log(f"the guest sees the volume as {device}")
    token = ctx.output(server_id, "cat /proc/sys/kernel/random/uuid")
    ctx.ssh(server_id, f"mkfs.ext4 -q -F {device}", timeout=max(120.0, ctx.spec.ssh_timeout))
    ctx.ssh(
        server_id,
        f"mkdir -p {MOUNT} && mount {device} {MOUNT} && echo {token} > {MOUNT}/check && sync "
        f"&& umount {MOUNT}",
    )
    read = ctx.ssh(
        server_id, f"mount {device} {MOUNT} && cat {MOUNT}/check; umount {MOUNT}", check=False
    )
    if token not in read.stdout:
        raise CheckFailed("the file written on the block volume did not read back after a remount")
    _detach(ctx, server_id, volume_id)
    _wait_guest(
        ctx,
        lambda: not (_disks(ctx, server_id) & found),
        f"the guest still sees {device} after the block volume was detached",
    )
