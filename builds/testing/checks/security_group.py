"""Security group: the cloud's firewall really stands between the outside and the guest.

The shared server moves to a security group of its own (inbound accept by default); SSH
still answers. An inbound drop rule for TCP 22 from anywhere makes port 22 unreachable from
the test host; removing the rule brings SSH back. The server always goes back to its
original group, whatever happened.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scaleway.instance.v1 import SecurityGroupTemplate

from builds.testing import ssh
from builds.testing.harness import CheckContext
from builds.testing.outcomes import CheckFailed
from cloud.retries import CloudError

NAME: str = "security_group"
LABEL: str = "Security group"
SHARED: bool = True
SOURCE_STATE: str = ""

PROPAGATION_SECONDS = 180.0  # how long a rule change may take to reach the hypervisor


def _move(ctx: CheckContext, server_id: str, group_id: str, group_name: str) -> None:
    ctx.call(
        ctx.instance._update_server,
        what=f"move server {ctx.label(server_id)} to security group {group_name}",
        server_id=server_id,
        zone=ctx.zone,
        security_group=SecurityGroupTemplate(id=group_id, name=group_name),
    )
    ctx.log(f"server {ctx.label(server_id)} is now in security group {group_name} ({group_id})")


def _wait_reachable(
    ctx: CheckContext, server_id: str, fallback: tuple[str, int], *, wanted: bool, failure: str
) -> None:
    """Poll port 22 from the test host until it answers (wanted) or stops answering."""
    deadline = time.monotonic() + min(PROPAGATION_SECONDS, ctx.spec.action_timeout)
    started = time.monotonic()
    while True:
        ctx.checkpoint()
        host, port = fallback
        if wanted:
            # Not forwarded (yet): the address seen before is the one to try.
            with contextlib.suppress(CloudError):
                host, port = ctx.harness.endpoint(server_id, refresh=True)
        greeting = ssh.banner(host, port, timeout=5)
        if bool(greeting) == wanted:
            state = f"answers ({greeting})" if greeting else "does not answer"
            ctx.log(f"port 22 at {host}:{port} {state} after {time.monotonic() - started:.0f} s")
            return
        if time.monotonic() >= deadline:
            raise CheckFailed(failure)
        ctx.sleep(2)


def _rule(ctx: CheckContext, group_id: str) -> Any:
    return ctx.call(
        ctx.instance.create_security_group_rule,
        what="add an inbound drop rule for TCP 22",
        zone=ctx.zone,
        security_group_id=group_id,
        protocol="TCP",
        direction="inbound",
        action="drop",
        ip_range="0.0.0.0/0",
        dest_port_from=22,
        dest_port_to=22,
        position=1,
        editable=True,
    ).rule


def run(ctx: CheckContext) -> None:
    server_id = ctx.server
    assert server_id is not None
    original = ctx.get_server(server_id).security_group
    endpoint = ctx.harness.endpoint(server_id, refresh=True)
    name = ctx.resource_name("sg")
    group = ctx.call(
        ctx.instance.create_security_group,
        what=f"create security group {name}",
        zone=ctx.zone,
        name=name,
        description="image factory test run: security group check",
        stateful=True,
        inbound_default_policy="accept",
        outbound_default_policy="accept",
        tags=ctx.tags(),
    ).security_group
    ctx.record("security_group", group.id, name=name)
    failing = True
    try:
        _check(ctx, server_id, group.id, name, endpoint)
        failing = False
    finally:
        if original is not None:
            try:
                _move(ctx, server_id, original.id, original.name)
            except Exception as exc:
                if not failing:
                    raise
                # The check's own failure is the news; this one only goes to the log.
                ctx.log(f"could not put the server back in {original.name}: {exc}")


def _check(
    ctx: CheckContext, server_id: str, group_id: str, name: str, endpoint: tuple[str, int]
) -> None:
    _move(ctx, server_id, group_id, name)
    _wait_reachable(
        ctx,
        server_id,
        endpoint,
        wanted=True,
        failure="SSH did not answer after the server moved to a security group accepting "
        "all inbound traffic",
    )
    rule = _rule(ctx, group_id)
    ctx.log(f"added rule {rule.id}: inbound drop TCP 22 from 0.0.0.0/0")
    _wait_reachable(
        ctx,
        server_id,
        endpoint,
        wanted=False,
        failure="port 22 still reachable from outside after the inbound drop rule",
    )
    ctx.call(
        ctx.instance.delete_security_group_rule,
        what="remove the inbound drop rule",
        zone=ctx.zone,
        security_group_id=group_id,
        security_group_rule_id=rule.id,
    )
    ctx.log(f"removed rule {rule.id}")
    _wait_reachable(
        ctx,
        server_id,
        endpoint,
        wanted=True,
        failure="port 22 still unreachable after the inbound drop rule was removed",
    )
    ctx.ssh(server_id, "true")
