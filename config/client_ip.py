"""The client's address as our own proxies saw it (TRUSTED_PROXY_COUNT of them).

One function, used wherever an address is counted: the public image request form's rate
limit and django-axes' login throttling (AXES_CLIENT_IP_CALLABLE).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The address the request form's rate limit and the login throttling count.

    TRUSTED_PROXY_COUNT proxies of ours stand in front of the dashboard (0: none, or one that
    sets REMOTE_ADDR itself). Each appends the address it got the request from to
    X-Forwarded-For, so the Nth address from the right is the client as our outermost proxy
    saw it; anything further left was written by the client and is ignored. A header with
    fewer addresses (a request that did not come through every proxy) or whose Nth one is not
    an IP address falls back to REMOTE_ADDR: at worst a proxy's address is counted, never an
    address the client chose.
    """
    remote = _ip(request.META.get("REMOTE_ADDR") or "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < count:
        return remote
    return _ip(forwarded[-count]) or remote
