"""Security groups and rules, flexible IPs and private NICs through the real SDK."""

from __future__ import annotations

import re

import pytest
from scaleway import ScalewayException
from scaleway.instance.v1 import IpType, SetSecurityGroupRulesRequestRule, VolumeServerTemplate
from scaleway.vpc.v2 import VpcV2API

from tests.localcloud.conftest import wait_for


@pytest.fixture
def server(api):
    """A server without an image (an empty 20 GB root volume) is enough for networking."""
    return api.create_server(
        commercial_type="DEV1-S",
        name="net-1",
        dynamic_ip_required=False,
        volumes={"0": VolumeServerTemplate(volume_type="l_ssd", size=20 * 1000**3)},
    ).server


def test_security_group_and_rules(api) -> None:
    group = api.create_security_group(
        description="web",
        stateful=True,
        name="web",
        inbound_default_policy="drop",
        enable_default_security=True,
    ).security_group
    assert (group.inbound_default_policy, group.outbound_default_policy) == ("drop", "accept")
    rules = api.list_security_group_rules(security_group_id=group.id).rules
    assert len(rules) == 6  # TCP 25, 465, 587 dropped outbound, IPv4 and IPv6
    assert {(r.protocol, r.direction, r.action, r.editable) for r in rules} == {
        ("TCP", "outbound", "drop", False)
    }
    assert {r.dest_port_from for r in rules} == {25, 465, 587}

    ssh = api.create_security_group_rule(
        security_group_id=group.id,
        protocol="tcp",
        direction="inbound",
        action="accept",
        ip_range="0.0.0.0/0",
        position=0,
        editable=True,
        dest_port_from=22,
    ).rule
    assert (ssh.protocol, ssh.dest_port_from, ssh.position) == ("TCP", 22, 7)
    api.delete_security_group_rule(security_group_id=group.id, security_group_rule_id=ssh.id)
    with pytest.raises(ScalewayException) as fixed:
        api.delete_security_group_rule(
            security_group_id=group.id, security_group_rule_id=rules[0].id
        )
    assert fixed.value.status_code == 400

    replaced = api.set_security_group_rules(
        security_group_id=group.id,
        rules=[
            SetSecurityGroupRulesRequestRule(
                action="accept",
                protocol="TCP",
                direction="inbound",
                ip_range="0.0.0.0/0",
                dest_port_from=80,
                dest_port_to=443,
                position=1,
                editable=True,
            ),
            SetSecurityGroupRulesRequestRule(
                action="accept",
                protocol="ICMP",
                direction="inbound",
                ip_range="::/0",
                position=2,
                editable=True,
            ),
        ],
    ).rules
    editable = [r for r in replaced if r.editable]
    assert [(r.protocol, r.dest_port_from, r.dest_port_to) for r in editable] == [
        ("TCP", 80, 443),
        ("ICMP", None, None),
    ]
    assert len(api.list_security_group_rules_all(security_group_id=group.id)) == 8

    updated = api.update_security_group(
        security_group_id=group.id, name="web-2", outbound_default_policy="drop"
    ).security_group
    assert (updated.name, updated.outbound_default_policy) == ("web-2", "drop")
    assert [g.id for g in api.list_security_groups(name="web-2").security_groups] == [group.id]
    api.delete_security_group(security_group_id=group.id)
    assert api.list_security_groups().security_groups == []
    defaults = api.list_default_security_group_rules().rules
    assert len(defaults) == 6


def test_flexible_ip(api, server) -> None:
    ip = api.create_ip(type_=IpType.ROUTED_IPV4, tags=["front"]).ip
    assert re.fullmatch(r"127\.\d+\.\d+\.\d+", ip.address)
    assert (ip.state, ip.server, ip.type_) == ("detached", None, "routed_ipv4")
    v6 = api.create_ip(type_=IpType.ROUTED_IPV6).ip
    assert v6.type_ == "routed_ipv6" and v6.prefix.endswith("/64")

    attached = api.update_ip(ip=ip.id, server=server.id).ip
    assert (attached.state, attached.server.id) == ("attached", server.id)
    got = api.get_server(server_id=server.id).server
    assert [p.address for p in got.public_ips] == [ip.address]
    assert got.public_ips[0].dynamic is False
    assert api.get_ip(ip=ip.address).ip.id == ip.id  # by address too, as on Scaleway
    assert {i.id for i in api.list_ips_all()} == {ip.id, v6.id}
    assert [i.id for i in api.list_ips(tags=["front"]).ips] == [ip.id]
    api.delete_ip(ip=ip.id)
    assert api.get_server(server_id=server.id).server.public_ips == []
    with pytest.raises(ScalewayException) as gone:
        api.get_ip(ip=ip.id)
    assert gone.value.status_code == 404


def test_private_nic_states(api, client, server) -> None:
    network = VpcV2API(client).create_private_network(
        default_route_propagation_enabled=True, name="pn-1"
    )
    nic = api.create_private_nic(server_id=server.id, private_network_id=network.id).private_nic
    # A stopped server has no hypervisor to apply it: available at once, as recorded on
    # Scaleway (a running server's NIC syncs first: the replay corpus covers it).
    assert nic.state == "available"
    assert re.fullmatch(r"02:00:00(:[0-9a-f]{2}){3}", nic.mac_address)
    nic = wait_for(
        lambda: api.get_private_nic(server_id=server.id, private_nic_id=nic.id).private_nic,
        lambda n: n.state == "available",
    )
    listed = api.list_private_ni_cs(server_id=server.id).private_nics
    assert [n.id for n in listed] == [nic.id]
    assert api.get_server(server_id=server.id).server.private_nics[0].id == nic.id
    assert [s.id for s in api.list_servers(private_network=network.id).servers] == [server.id]
    with pytest.raises(ScalewayException) as twice:
        api.create_private_nic(server_id=server.id, private_network_id=network.id)
    assert twice.value.status_code == 400
    api.delete_private_nic(server_id=server.id, private_nic_id=nic.id)
    assert api.list_private_ni_cs(server_id=server.id).private_nics == []
