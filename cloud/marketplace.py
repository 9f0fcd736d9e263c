"""Reading the cloud's Marketplace catalogue through the SDK (read-only), as plain values.

`read_catalogue()` lists every Marketplace image (end-of-life ones too), each image's versions
and each version's local images (zone, architecture, storage `type`, compatible commercial
types). It only ever calls the public Marketplace v2 API's GET endpoints, so it works against
real Scaleway's public Marketplace (no write access needed) as well as against localcloud.

Scaleway's Marketplace is public: without SCW_ACCESS_KEY/SCW_SECRET_KEY the reader uses an
anonymous client (the SDK's validation of credentials is skipped; no token is sent).

Everything is read before anything is returned: a failure (the API unreachable, an error
answer) raises CloudError and the caller has nothing to record half-way.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scaleway import Client
from scaleway.marketplace.v2 import MarketplaceV2API

from cloud import clients
from cloud.retries import CloudError, call

PAGE_SIZE = 100
READ_CONCURRENCY = 8


@dataclass(frozen=True)
class MarketLocalImage:
    """One local image of a version: the Instance image id customers boot in a zone."""

    id: str
    zone: str
    arch: str
    type: str
    compatible_commercial_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarketVersion:
    id: str
    name: str
    created_at: dt.datetime | None
    published_at: dt.datetime | None
    local_images: tuple[MarketLocalImage, ...] = ()


@dataclass(frozen=True)
class MarketImage:
    id: str
    label: str
    name: str
    valid_until: dt.datetime | None
    versions: tuple[MarketVersion, ...] = field(default=())


def marketplace_api() -> MarketplaceV2API:
    """The configured client, or an anonymous one when no credentials are set, with no
    default zone: the SDK fills a missing `zone` filter of `list_local_images` with the
    client's default zone, which would hide a version's local images in every other zone."""
    try:
        scw = clients.client()
        anonymous = False
    except CloudError:
        scw, anonymous = Client.from_env(), True
    scw.default_zone = None
    return MarketplaceV2API(scw, bypass_validation=anonymous)


def _local_image(local: Any) -> MarketLocalImage:
    return MarketLocalImage(
        id=local.id,
        zone=str(local.zone or ""),
        arch=str(local.arch or ""),
        type=str(local.type_ or ""),
        compatible_commercial_types=tuple(local.compatible_commercial_types or ()),
    )


def read_catalogue(labels: set[str] | None = None) -> list[MarketImage]:
    """Every Marketplace image (of `labels`, when given) with its versions and their local
    images, sorted by label. Raises CloudError when any part cannot be read.

    A Marketplace of a hundred images with a few versions each takes hundreds of calls: the
    versions of the images, then the local images of the versions, are read
    READ_CONCURRENCY at a time."""
    api = marketplace_api()
    listed = call(
        api.list_images_all,
        include_eol=True,
        page_size=PAGE_SIZE,
        what="list Marketplace images",
    )
    images = sorted(
        (i for i in listed if labels is None or i.label in labels),
        key=lambda i: (i.label or "", i.id),
    )

    def versions_of(image: Any) -> list[Any]:
        return call(
            api.list_versions_all,
            image_id=image.id,
            page_size=PAGE_SIZE,
            what=f"list the Marketplace versions of {image.label}",
        )

    def local_images_of(version: Any) -> list[Any]:
        return call(
            api.list_local_images_all,
            version_id=version.id,
            page_size=PAGE_SIZE,
            what=f"list the local images of Marketplace version {version.id}",
        )

    with ThreadPoolExecutor(max_workers=READ_CONCURRENCY) as pool:
        # map() hands back the first failure when its result is reached: nothing is returned.
        versions = list(pool.map(versions_of, images))
        flat = [version for found in versions for version in found]
        locals_ = dict(zip([v.id for v in flat], pool.map(local_images_of, flat), strict=True))
    return [
        MarketImage(
            id=image.id,
            label=image.label or "",
            name=image.name or "",
            valid_until=image.valid_until,
            versions=tuple(
                MarketVersion(
                    id=version.id,
                    name=version.name or "",
                    created_at=version.created_at,
                    published_at=version.published_at,
                    local_images=tuple(_local_image(li) for li in locals_[version.id]),
                )
                for version in found
            ),
        )
        for image, found in zip(images, versions, strict=True)
    ]
