"""Reboot: the reboot action really restarts the guest, and it comes back whole.

The boot id changes (a guest that never went down keeps it), SSH answers again, sshd is
active and the network has its default route back.
"""

from __future__ import annotations

from builds.testing.harness import RUNNING, CheckContext
from builds.testing.outcomes import CheckFailed

NAME: str = "reboot"
LABEL: str = "Reboot"
SHARED: bool = True
SOURCE_STATE: str = ""


def run(ctx: CheckContext) -> None:
    server_id = ctx.server
    assert server_id is not None
    before = ctx.boot_id(server_id)
    ctx.act(server_id, "reboot", RUNNING)
    after = ctx.wait_for_new_boot(server_id, before, after="reboot")
    ctx.log(f"boot id {before} -> {after}")
    sshd = ctx.ssh(
        server_id, "systemctl is-active ssh.service sshd.service ssh.socket", check=False
    )
    if "active" not in sshd.stdout.split():
        raise CheckFailed("sshd is not active after reboot")
    if not ctx.output(server_id, "ip -4 route show default"):
        raise CheckFailed("the network did not come back after reboot: no IPv4 default route")
