"""Rescue: boot type rescue lands in the rescue system with the server's root disk visible
and usable, and boot type local brings the server's own system back.

The root disk is the l_ssd volume of a local image's server, the Block volume of a Block
Storage image's server: the rescue system must see and mount either.

A new server from the image is started on boot type rescue (a server is switched to rescue
while powered off, Scaleway's documented way; starting there spares a boot of the image under
emulation, the expensive part). SSH must land in the rescue system (`/etc/scw-rescue`),
where the server's disk shows in /proc/partitions and its root filesystem can be mounted and
written to, as a customer repairing a server does. Back on boot type local, a reboot must land
in the image again: not the rescue system, and the file written from rescue is there.
"""

from __future__ import annotations

import re
import uuid

from builds.testing.harness import RUNNING, CheckContext
from builds.testing.outcomes import CheckFailed

NAME: str = "rescue"
LABEL: str = "Rescue"
SHARED: bool = False
SOURCE_STATE: str = ""

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


# Mount each partition of the disks in turn; the one holding /etc/os-release is the
# root filesystem: write the token under /root there. Prints the partition.
PARTITIONS = r"^(vd[a-z]+|sd[a-z]+|xvd[a-z]+)[0-9]+$|^nvme[0-9]+n[0-9]+p[0-9]+$"
WRITE_FROM_RESCUE = (
    "m=/mnt/factory-root; mkdir -p $m && "
    f"for p in $(awk 'NR > 2 && $4 ~ /{PARTITIONS}/ {{{{ print $4 }}}}' /proc/partitions); do "
    "mount /dev/$p $m 2>/dev/null || continue; "
    "if [ -e $m/etc/os-release ] || [ -L $m/etc/os-release ]; then "
    "mkdir -p $m/root && echo {token} > $m{path} && sync && umount $m && echo /dev/$p && exit 0; "
    "fi; umount $m; done; exit 1"
)
MARKER = "/root/factory-check-rescue"


def _disk_kind(ctx: CheckContext) -> str:
    return "a Block volume" if ctx.spec.block else "a local volume"


def run(ctx: CheckContext) -> None:
    server_id = ctx.create_server("rescue", start=False)
    _boot_type(ctx, server_id, "rescue")
    ctx.power_on(server_id)
    if not _in_rescue(ctx, server_id):
        raise CheckFailed(
            f"SSH did not land in the rescue system ({RESCUE_MARKER} is missing) with boot type "
            "rescue"
        )
    partitions = ctx.output(server_id, "cat /proc/partitions")
    if not DISK.search(partitions):
        raise CheckFailed(
            f"the root disk ({_disk_kind(ctx)}) is not visible in the rescue system "
            "(/proc/partitions)"
        )
    token = uuid.uuid4().hex
    written = ctx.ssh(server_id, WRITE_FROM_RESCUE.format(token=token, path=MARKER), check=False)
    if not written.ok:
        raise CheckFailed(
            f"the rescue system could not mount the root filesystem of the server's disk "
            f"({_disk_kind(ctx)}) and write to it"
        )
    rescue_boot = ctx.boot_id(server_id)
    _boot_type(ctx, server_id, "local")
    ctx.act(server_id, "reboot", RUNNING)
    ctx.wait_for_new_boot(server_id, rescue_boot, after="leaving rescue mode")
    if _in_rescue(ctx, server_id):
        raise CheckFailed("still in the rescue system after boot type local and a reboot")
    if ctx.read_marker(server_id, MARKER) != token:
        raise CheckFailed(
            "the server did not boot its own system after rescue: the file written to its disk "
            "from the rescue system is missing"
        )
