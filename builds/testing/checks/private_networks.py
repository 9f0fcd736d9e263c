"""Basic Private Networks functionalities: two servers on a private network find each other.

A private network is made through the VPC v2 API in the zone's region, and two servers of the
run's own (the shared server's chain is not disturbed) get a private NIC on it before their
first boot. Each must get an IPv4 address on that NIC by DHCP (the one IPAM assigned, when
IPAM names one), reach the other's private address, and resolve the other's
`<server-name>.<private-network-name>.internal`.
"""

from __future__ import annotations

import time
from typing import Any

from builds.testing.harness import RUNNING, CheckContext
from builds.testing.outcomes import CheckFailed
from cloud import waiters

NAME: str = "private_networks"
LABEL: str = "Basic Private Networks"
SHARED: bool = False
SOURCE_STATE: str = ""

GUEST_SECONDS = 120.0  # DHCP on the private NIC, and private DNS records, may lag the boot


def _nic(ctx: CheckContext, server_id: str, network_id: str) -> Any:
    api = ctx.instance
    nic = ctx.call(
        api.create_private_nic,
        what=f"attach server {ctx.label(server_id)} to the private network",
        zone=ctx.zone,
        server_id=server_id,
        private_network_id=network_id,
        tags=ctx.tags(),
    ).private_nic

    def fetch() -> Any:
        return ctx.call(
            api.get_private_nic,
            what=f"get private NIC {nic.id}",
            zone=ctx.zone,
            server_id=server_id,
            private_nic_id=nic.id,
        ).private_nic

    nic = ctx.wait(
        waiters.wait_for,
        fetch,
        state_of=lambda n: n.state,
        until=("available",),
        failed=("syncing_error",),
        what=f"private NIC {nic.id}",
    )
    ctx.log(f"private NIC {nic.id} of {ctx.label(server_id)}: {nic.mac_address}, {nic.state}")
    return nic


def _ipam_address(ctx: CheckContext, nic: Any) -> str | None:
    found = ctx.call(
        ctx.ipam.list_i_ps,
        what=f"IPAM addresses of private NIC {nic.id}",
        region=ctx.region,
        resource_id=nic.id,
        is_ipv6=False,
    )
    for ip in found.ips or []:
        return str(ip.address).split("/", 1)[0]
    return None


def _interface(ctx: CheckContext, server_id: str, mac: str) -> str:
    links = ctx.output(server_id, "ip -o link show")
    for line in links.splitlines():
        parts = line.split()
        if "link/ether" in parts and parts[parts.index("link/ether") + 1].lower() == mac.lower():
            return parts[1].rstrip(":").split("@", 1)[0]
    raise CheckFailed(
        f"{ctx.label(server_id)} has no interface with its private NIC's MAC address {mac}"
    )


def _dhcp_address(ctx: CheckContext, server_id: str, interface: str) -> str:
    deadline = time.monotonic() + GUEST_SECONDS
    while True:
        shown = ctx.output(server_id, f"ip -o -4 addr show dev {interface}")
        for line in shown.splitlines():
            parts = line.split()
            if "inet" in parts:
                return parts[parts.index("inet") + 1].split("/", 1)[0]
        if time.monotonic() >= deadline:
            raise CheckFailed(
                f"{ctx.label(server_id)} got no IPv4 address by DHCP on its private NIC "
                f"({interface}) within {GUEST_SECONDS:g} s"
            )
        ctx.sleep(3)


def _reaches(ctx: CheckContext, server_id: str, address: str) -> bool:
    has_ping = ctx.ssh(server_id, "command -v ping", check=False).ok
    if has_ping:
        return ctx.ssh(server_id, f"ping -c 3 -W 3 {address}", check=False).ok
    ctx.log("ping is not installed: reachability is checked with a TCP connection to port 22")
    return ctx.ssh(server_id, f"nc -z -w 5 {address} 22", check=False).ok


def _resolves(ctx: CheckContext, server_id: str, name: str, address: str) -> None:
    deadline = time.monotonic() + GUEST_SECONDS
    found: list[str] = []
    while True:
        answer = ctx.ssh(server_id, f"getent ahostsv4 {name}", check=False)
        found = sorted({line.split()[0] for line in answer.stdout.splitlines() if line.split()})
        if address in found:
            return
        if time.monotonic() >= deadline:
            break
        ctx.sleep(3)
    if not found:
        raise CheckFailed(f"{ctx.label(server_id)} cannot resolve {name}")
    raise CheckFailed(
        f"{name} resolves to {', '.join(found)} on {ctx.label(server_id)}, not to {address}"
    )


def run(ctx: CheckContext) -> None:
    network_name = ctx.resource_name("pn")
    network = ctx.call(
        ctx.vpc.create_private_network,
        what=f"create private network {network_name}",
        region=ctx.region,
        name=network_name,
        tags=ctx.tags(),
        default_route_propagation_enabled=False,
    )
    ctx.record("private_network", network.id, name=network_name)
    servers = [ctx.create_server(label, start=False) for label in ("pn-a", "pn-b")]
    nics = {server_id: _nic(ctx, server_id, network.id) for server_id in servers}
    for server_id in servers:  # both boot at once; then wait for each
        ctx.act(server_id, "poweron", RUNNING)
    started = time.monotonic()  # both are running: their boots started
    for server_id in servers:
        ctx.wait_ssh(server_id, started=started)
    addresses: dict[str, str] = {}
    for server_id in servers:
        interface = _interface(ctx, server_id, nics[server_id].mac_address)
        address = _dhcp_address(ctx, server_id, interface)
        assigned = _ipam_address(ctx, nics[server_id])
        ctx.log(f"{ctx.label(server_id)}: {interface} has {address} (IPAM: {assigned})")
        if assigned and assigned != address:
            raise CheckFailed(
                f"{ctx.label(server_id)} got {address} by DHCP but IPAM assigned {assigned}"
            )
        addresses[server_id] = address
    for server_id, other in ((servers[0], servers[1]), (servers[1], servers[0])):
        if not _reaches(ctx, server_id, addresses[other]):
            raise CheckFailed(
                f"{ctx.label(server_id)} cannot reach {ctx.label(other)}'s private address "
                f"{addresses[other]}"
            )
        _resolves(ctx, server_id, f"{ctx.label(other)}.{network_name}.internal", addresses[other])
