"""A read-only smoke test of the adapter against REAL Scaleway.

It runs only when the process environment holds real credentials (SCW_ACCESS_KEY,
SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID) and no SCW_API_URL (which would point elsewhere,
e.g. at localcloud); otherwise it is skipped with the reason. It creates nothing: it lists
images, the Marketplace and the buckets, which proves the clients, the authentication and
the endpoint convention (https://s3.<region>.scw.cloud) with no code change.
"""

from __future__ import annotations

import os

import pytest

from cloud import clients
from cloud.retries import call

_MISSING = [
    name
    for name in ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID")
    if not os.environ.get(name)
]
_REASON = (
    f"real Scaleway credentials are not set ({', '.join(_MISSING)} missing)"
    if _MISSING
    else "SCW_API_URL is set: this test only runs against real Scaleway"
    if os.environ.get("SCW_API_URL")
    else ""
)
# The SDK's own test key pair is not a real credential.
if not _REASON and os.environ.get("SCW_ACCESS_KEY", "").upper() == "SCWXXXXXXXXXXXXXXXXX":
    _REASON = "SCW_ACCESS_KEY is the SDK's placeholder, not a real credential"

pytestmark = pytest.mark.skipif(bool(_REASON), reason=_REASON or "runs")


def test_real_scaleway_smoke() -> None:
    zone = os.environ.get("SCW_DEFAULT_ZONE", "fr-par-1")
    region = zone.rsplit("-", 1)[0]
    api = clients.instance_api()
    images = call(api.list_images, zone=zone, per_page=1, what=f"list images in {zone}")
    assert isinstance(images.images, list)
    market = call(
        clients.marketplace_api().list_images,
        page_size=1,
        include_eol=False,
        what="list Marketplace images",
    )
    assert market.images, "the public Marketplace lists images"
    buckets = clients.s3_client(region).list_buckets()
    assert "Buckets" in buckets
