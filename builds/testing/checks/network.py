"""Network: the guest is on the network the cloud gave it, and reaches the metadata service.

An interface is up with a global IPv4 address and there is a default route; when the server
has a public IPv6 address the guest has a global IPv6 address and an IPv6 default route too;
the metadata service (169.254.42.42) answers and describes this very server (the image's
provider package depends on it for keys, hostname and user data). The log says whether the
guest booted in UEFI or BIOS mode.
"""

from __future__ import annotations

import json

from builds.testing.harness import CheckContext
from builds.testing.outcomes import CheckFailed

NAME: str = "network"
LABEL: str = "Network"
SHARED: bool = True
SOURCE_STATE: str = ""

METADATA_URL = "http://169.254.42.42/conf?format=json"


def run(ctx: CheckContext) -> None:
    server_id = ctx.server
    assert server_id is not None
    server = ctx.get_server(server_id)
    ctx.ssh(server_id, "ip -o link show up")
    firmware = ctx.output(
        server_id, "if [ -d /sys/firmware/efi ]; then echo UEFI; else echo BIOS; fi"
    )
    ctx.log(f"the guest booted in {firmware} mode")
    if not ctx.output(server_id, "ip -o -4 addr show scope global"):
        raise CheckFailed("no interface has a global IPv4 address")
    if not ctx.output(server_id, "ip -4 route show default"):
        raise CheckFailed("there is no IPv4 default route")
    ipv6 = [ip.address for ip in server.public_ips or [] if str(ip.family) == "inet6"]
    if ipv6:
        if not ctx.output(server_id, "ip -o -6 addr show scope global"):
            raise CheckFailed(
                f"the server has the IPv6 address {ipv6[0]} but no interface has a global IPv6 "
                "address"
            )
        if not ctx.output(server_id, "ip -6 route show default"):
            raise CheckFailed("the server has IPv6 but there is no IPv6 default route")
    else:
        ctx.log("the server has no public IPv6 address: IPv6 is not checked")
    answer = ctx.ssh(server_id, f"curl -sf --max-time 10 '{METADATA_URL}'", check=False)
    if not answer.ok:
        raise CheckFailed("the metadata service at 169.254.42.42 did not answer")
    try:
        data = json.loads(answer.stdout)
    except ValueError as exc:
        raise CheckFailed("the metadata service did not answer with JSON") from exc
    found = data.get("id") if isinstance(data, dict) else None
    if found != server_id:
        raise CheckFailed(f"the metadata service described server {found}, not {server_id}")
