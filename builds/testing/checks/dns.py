"""DNS: the guest has a resolver, resolves public names, and its own public DNS name.

The server's own name (`<id>.pub.instances.scw.cloud` on Scaleway) is only checked where the
cloud publishes one; elsewhere it is reported as not applicable, never as passed.
"""

from __future__ import annotations

from builds.testing.harness import CheckContext
from builds.testing.outcomes import CheckFailed
from cloud import endpoints

NAME: str = "dns"
LABEL: str = "DNS"
SHARED: bool = True
SOURCE_STATE: str = ""

PUBLIC_NAME = "deb.debian.org"
STUB_RESOLVERS = ("127.0.0.53", "127.0.0.54")


def _addresses(getent_output: str) -> list[str]:
    return [line.split()[0] for line in getent_output.splitlines() if line.split()]


def run(ctx: CheckContext) -> None:
    server_id = ctx.server
    assert server_id is not None
    conf = ctx.ssh(server_id, "cat /etc/resolv.conf", check=False).stdout
    nameservers = [
        line.split()[1]
        for line in conf.splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]
    if not nameservers:
        raise CheckFailed("no resolver is configured: /etc/resolv.conf names no nameserver")
    if all(ns in STUB_RESOLVERS for ns in nameservers):
        # systemd-resolved's stub: it needs upstream servers of its own.
        listed = ctx.ssh(server_id, "resolvectl dns", check=False).stdout
        upstream = [
            token
            for line in listed.splitlines()
            for token in line.partition(":")[2].split()
            if token
        ]
        if not upstream:
            raise CheckFailed("systemd-resolved has no upstream DNS server (resolvectl dns)")
    public = ctx.ssh(server_id, f"getent ahosts {PUBLIC_NAME}", check=False)
    if not public.ok or not _addresses(public.stdout):
        raise CheckFailed(f"the public name {PUBLIC_NAME} does not resolve")
    own = endpoints.public_dns_name(ctx.zone, server_id)
    if own is None:
        ctx.not_applicable(
            "the server's own public DNS name (<id>.pub.instances.scw.cloud) resolves: "
            "this cloud publishes no public DNS name for its servers"
        )
        return
    found = ctx.ssh(server_id, f"getent ahostsv4 {own}", check=False)
    addresses = _addresses(found.stdout) if found.ok else []
    if not addresses:
        raise CheckFailed(f"the server's own DNS name {own} does not resolve")
    server = ctx.get_server(server_id)
    public_v4 = [ip.address for ip in server.public_ips or [] if str(ip.family) == "inet"]
    if public_v4 and not set(public_v4) & set(addresses):
        raise CheckFailed(
            f"the server's own DNS name {own} resolves to {', '.join(addresses)}, "
            f"not to its public address {public_v4[0]}"
        )
