"""Rescue: boot type rescue lands in the rescue system with the local disk visible, and boot
type local brings the server's own system back.

The server is powered off before switching to rescue (Scaleway's documented way), powered
on, and SSH must land in the rescue system (`/etc/scw-rescue`) where the local disk shows in
/proc/partitions. Back on boot type local, a reboot must land in the image again: no marker,
and the file written before rescue (or the same machine id) is there.
"""

from __future__ import annotations

import re

from builds.testing.harness import RUNNING, CheckContext
from builds.testing.outcomes import CheckFailed

NAME = "rescue"
LABEL = "Rescue"
SHARED = False

RESCUE_MARKER = "/etc/scw-rescue"
DISK = re.compile(r"\s(vd[a-z]+|sd[a-z]+|nvme\d+n\d+|xvd[a-z]+)\s*$", re.MULTILINE)


def _boot_type(ctx: CheckContext, server_id: str, boot_type: str) -> None:
    ctx.call(
        ctx.instance._update_server,
        what=f"set boot type {boot_type}",
        zone=ctx.zone,
        server_id=server_id,
        boot_type=boot_type,
    )
    ctx.log(f"server {ctx.label(server_id)}: boot type {boot_type}")


def _in_rescue(ctx: CheckContext, server_id: str) -> bool:
    found = ctx.ssh(server_id, f"test -f {RESCUE_MARKER} && echo rescue", check=False)
    return "rescue" in found.stdout.split()


def run(ctx: CheckContext) -> None:
    server_id = ctx.create_server("rescue")
    token = ctx.write_marker(server_id)
    machine_id = ctx.output(server_id, "cat /etc/machine-id")
    ctx.power_off(server_id)
    _boot_type(ctx, server_id, "rescue")
    ctx.power_on(server_id)
    if not _in_rescue(ctx, server_id):
        raise CheckFailed(
            f"SSH did not land in the rescue system ({RESCUE_MARKER} is missing) with boot type "
            "rescue"
        )
    partitions = ctx.output(server_id, "cat /proc/partitions")
    if not DISK.search(partitions):
        raise CheckFailed("the local disk is not visible in the rescue system (/proc/partitions)")
    rescue_boot = ctx.boot_id(server_id)
    _boot_type(ctx, server_id, "local")
    ctx.act(server_id, "reboot", RUNNING)
    ctx.wait_for_new_boot(server_id, rescue_boot, after="leaving rescue mode")
    if _in_rescue(ctx, server_id):
        raise CheckFailed("still in the rescue system after boot type local and a reboot")
    same_file = ctx.read_marker(server_id) == token
    same_machine = ctx.ssh(server_id, "cat /etc/machine-id", check=False).stdout.strip()
    if not same_file and same_machine != machine_id:
        raise CheckFailed(
            "the server did not boot its own system after rescue: the file written before "
            "is missing and the machine id differs"
        )
