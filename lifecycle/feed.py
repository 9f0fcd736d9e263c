"""The read-only JSON catalogue feed, shaped like the Marketplace, for consoles and scripts.

Every image with its lifecycle dates and state, its current version and its earlier released
versions, each with its local images per zone. With the "feed only" publisher (a Scaleway
account without Marketplace write access) this feed *is* the catalogue.

The document holds nothing that changes by itself (no generation time), so it is a function
of the rows it is built from. Its ETag is a fingerprint of exactly those columns
(`fingerprint`), read as plain tuples, so that a client sending it back in If-None-Match gets
a 304 without the document being built: reading the columns costs a small part of building
the nested document. The number of queries does not depend on the number of images.
A version's `manifest` and `recipe` (the largest columns, and not in the feed) are never read.

Scripts read it without a session with `Authorization: Bearer <token>`, one of the tokens of
the FEED_TOKENS setting (none: only logged-in users). Tokens never reach a log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from catalog.choices import LocalImageState
from catalog.models import Category, Image, ImageVersion, LocalImage, UpstreamLifecycle, Zone
from lifecycle.models import Release

FEED_VERSION = 1


def _date(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _lifecycle(image: Image) -> dict[str, Any]:
    # An InstantApp follows its base image's upstream dates.
    source = image if image.is_os else image.base_image
    upstream = getattr(source, "upstream", None) if source is not None else None
    return {
        "rolling": bool(upstream and upstream.rolling),
        "upstream_release": _date(upstream.release_date) if upstream else None,
        "upstream_eol": _date(upstream.security_support_end) if upstream else None,
        "upstream_extended_support_end": _date(upstream.extended_support_end) if upstream else None,
        "deprecation_date": _date(image.deprecation_date),
        "deprecated_at": _date(image.deprecated_at),
        "retired_at": _date(image.retired_at),
    }


def _version(version: ImageVersion, image: Image, current_id: int | None) -> dict[str, Any]:
    releases = list(version.releases.all())
    latest = releases[0] if releases else None
    return {
        "name": version.name,
        "arch": version.arch,
        "state": version.state,
        "current": version.pk == current_id,
        "released_at": _date(version.released_at),
        "withdrawn_at": _date(latest.withdrawn_at) if latest else None,
        "marketplace_version_id": latest.marketplace_version_id if latest else "",
        "upstream_serial": version.upstream_serial,
        "local_images": [
            {
                "id": local.provider_image_id,
                "zone": local.zone.code,
                "arch": version.arch,
                "type": "instance_local",
                "compatible_commercial_types": list(image.commercial_types or []),
            }
            for local in version.local_images.all()
        ],
    }


def _current_version_id(versions: list[ImageVersion]) -> int | None:
    """The version of the latest open release (what the label resolves to)."""
    best: tuple[dt.datetime, int] | None = None
    current: int | None = None
    for version in versions:
        for row in version.releases.all():
            if row.withdrawn_at is None and (best is None or (row.released_at, row.pk) > best):
                best, current = (row.released_at, row.pk), version.pk
    return current


def _image(image: Image) -> dict[str, Any]:
    versions = list(image.versions.all())
    current_id = _current_version_id(versions)
    rendered = [_version(v, image, current_id) for v in versions]
    current = next((v for v in rendered if v["current"]), None)
    return {
        "label": image.label,
        "name": image.name,
        "kind": image.kind,
        "description": image.description,
        "logo": image.logo,
        "category": image.category.name,
        "architectures": list(image.architectures or []),
        "commercial_types": list(image.commercial_types or []),
        "base_image": image.base_image.label if image.base_image else None,
        "replacement": image.replacement.label if image.replacement else None,
        "state": image.state,
        "valid_until": _date(image.deprecation_date),
        "lifecycle": _lifecycle(image),
        "current_version": current,
        "versions": [v for v in rendered if not v["current"]],
    }


def images_queryset():
    """Every image with what the feed shows, in a fixed number of queries."""
    released_versions = (
        ImageVersion.objects.filter(releases__isnull=False)
        .defer("manifest", "recipe")
        .distinct()
        .order_by("-released_at", "-created_at", "-id")
        .prefetch_related(
            Prefetch(
                "local_images",
                queryset=LocalImage.objects.filter(state=LocalImageState.AVAILABLE)
                .select_related("zone")
                .order_by("zone__code"),
            ),
            Prefetch(
                "releases",
                queryset=Release.objects.only(
                    "id", "version_id", "released_at", "withdrawn_at", "marketplace_version_id"
                ).order_by("-released_at", "-id"),
            ),
        )
    )
    return (
        Image.objects.select_related("category", "upstream", "base_image__upstream", "replacement")
        .prefetch_related(Prefetch("versions", queryset=released_versions))
        .order_by("label")
    )


def build_feed() -> dict[str, Any]:
    """The feed document."""
    images = [_image(image) for image in images_queryset()]
    return {"feed_version": FEED_VERSION, "total_count": len(images), "images": images}


def render(feed: dict[str, Any]) -> bytes:
    """The feed's bytes: deterministic (sorted keys), so equal inputs give equal bytes."""
    return json.dumps(feed, sort_keys=True, separators=(",", ":")).encode()


# Every column the document is built from, table by table. A column read by _image, _version
# or _lifecycle and missing here would let a change go unseen by the ETag: keep them in step.
_FINGERPRINT_COLUMNS: list[tuple[Any, tuple[str, ...]]] = [
    (
        Image.objects.all(),
        (
            "id",
            "label",
            "name",
            "kind",
            "description",
            "logo",
            "category_id",
            "architectures",
            "commercial_types",
            "base_image_id",
            "replacement_id",
            "state",
            "deprecation_date",
            "deprecated_at",
            "retired_at",
        ),
    ),
    (Category.objects.all(), ("id", "name")),
    (
        UpstreamLifecycle.objects.all(),
        (
            "id",
            "image_id",
            "rolling",
            "release_date",
            "security_support_end",
            "extended_support_end",
        ),
    ),
    (
        ImageVersion.objects.filter(releases__isnull=False).distinct(),
        ("id", "image_id", "name", "arch", "state", "released_at", "created_at", "upstream_serial"),
    ),
    (
        Release.objects.all(),
        ("id", "version_id", "released_at", "withdrawn_at", "marketplace_version_id"),
    ),
    (
        LocalImage.objects.filter(state=LocalImageState.AVAILABLE),
        ("id", "version_id", "zone_id", "provider_image_id"),
    ),
    (Zone.objects.all(), ("id", "code")),
]


def fingerprint() -> str:
    """The feed's ETag, from the columns it is built from, without building it.

    A strong ETag: the document is a deterministic function of these values (and of
    FEED_VERSION), so equal fingerprints mean byte-identical documents.
    """
    digest = hashlib.sha256(f"feed {FEED_VERSION}".encode())
    for queryset, columns in _FINGERPRINT_COLUMNS:
        digest.update(b"\x1e" + queryset.model._meta.db_table.encode())
        for row in queryset.order_by("id").values_list(*columns).iterator(chunk_size=2000):
            digest.update(repr(row).encode())
    return f'"{digest.hexdigest()[:32]}"'


def token_allowed(given: str) -> bool:
    """Whether `given` is one of the FEED_TOKENS, compared in constant time.

    Every token is compared, so the time taken says nothing about which one (or how much of
    one) matched. No tokens configured: nothing is allowed.
    """
    given_bytes = given.encode()
    matched = False
    for token in settings.FEED_TOKENS:
        matched |= hmac.compare_digest(given_bytes, token.encode())
    return bool(given) and matched
