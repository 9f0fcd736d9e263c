"""The read-only JSON catalogue feed, shaped like the Marketplace, for consoles and scripts.

Every image with its lifecycle dates and state, its current version and its earlier released
versions, each with its local images per zone and storage type (`type`, named as the
Marketplace names it: `instance_local` or `instance_sbs`) and the paths of its SBOM downloads.
A local image's `compatible_commercial_types` here is the image's own list (the feed reads no
cloud); the Marketplace publisher narrows it to the types that boot from that storage. With the
"feed only" publisher (a Scaleway account without Marketplace write access) this feed *is* the
catalogue.

The document holds nothing that changes by itself (no generation time), so it is a function
of the rows it is built from. Its ETag (`fingerprint`) changes whenever one of those columns
does: database triggers count every change to them (lifecycle.feed_stamp), so that it costs
one query and a client sending it back in If-None-Match gets a 304 without the document being
built. Without the triggers (migrate not run) it is a hash of every one of those columns.

The document itself is built from plain rows (`values()`, no model instances) in four queries
whatever the number of images; a version's `manifest` and `recipe` (the largest columns, not
in the feed) are never read.

Scripts read it without a session with `Authorization: Bearer <token>`, one of the tokens of
the FEED_TOKENS setting (none: only logged-in users). Tokens never reach a log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db.models import Exists, Func, OuterRef, TextField, Value
from django.db.models.functions import Cast, Coalesce
from django.urls import reverse
from django.utils.http import RFC3986_SUBDELIMS

from catalog.choices import ImageKind, LocalImageState
from catalog.models import Category, Image, ImageVersion, LocalImage, UpstreamLifecycle, Zone
from lifecycle import feed_stamp
from lifecycle.models import Release

FEED_VERSION = 1
# The document's shape beyond its rows (keys added, renamed or computed differently): part of
# the ETag, so that an ETag a client holds from an older shape never matches a newer one.
# Additions that old clients can ignore keep FEED_VERSION. 2: SBOM links per version. 3: each
# local image's storage type (`type`, instance_local or instance_sbs), the image's
# `storage_types`.
FEED_SHAPE = 3


def _date(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


_UPSTREAM = ("rolling", "release_date", "security_support_end", "extended_support_end")
_IMAGE_COLUMNS = (
    "id", "label", "name", "kind", "description", "logo", "architectures", "commercial_types",
    "storage_types", "state", "deprecation_date", "deprecated_at", "retired_at", "category__name",
    "base_image__label", "replacement__label", "upstream__id",
    *(f"upstream__{c}" for c in _UPSTREAM),
    "base_image__upstream__id", *(f"base_image__upstream__{c}" for c in _UPSTREAM),
)  # fmt: skip


def _lifecycle(image: dict[str, Any]) -> dict[str, Any]:
    # An InstantApp follows its base image's upstream dates.
    prefix = "upstream__" if image["kind"] == ImageKind.OS else "base_image__upstream__"
    known = image[prefix + "id"] is not None
    return {
        "rolling": bool(known and image[prefix + "rolling"]),
        "upstream_release": _date(image[prefix + "release_date"]) if known else None,
        "upstream_eol": _date(image[prefix + "security_support_end"]) if known else None,
        "upstream_extended_support_end": (
            _date(image[prefix + "extended_support_end"]) if known else None
        ),
        "deprecation_date": _date(image["deprecation_date"]),
        "deprecated_at": _date(image["deprecated_at"]),
        "retired_at": _date(image["retired_at"]),
    }


def _versions_by_image(image_ids: list[int] | None = None) -> dict[int, list[dict[str, Any]]]:
    """Each image's released versions (of `image_ids`, or all), newest first, each with its
    releases (newest first) and its available local images (by zone, then storage type), as
    plain rows: three queries."""
    versions: dict[int, dict[str, Any]] = {}
    by_image: dict[int, list[dict[str, Any]]] = {}
    released: Any = ImageVersion.objects.filter(pk__in=Release.objects.values("version_id"))
    if image_ids is not None:
        # A page: its images' versions through the image index, each checked for a release
        # (SQLite scanned every release and version for the IN form: 0.5 s at 1,000 images).
        released = ImageVersion.objects.filter(
            Exists(Release.objects.filter(version_id=OuterRef("pk"))), image_id__in=image_ids
        )
    for row in released.order_by("-released_at", "-created_at", "-id").values(
        "id", "image_id", "name", "arch", "state", "released_at", "upstream_serial"
    ):
        version: dict[str, Any] = {**row, "releases": [], "local_images": []}
        versions[version["id"]] = version
        by_image.setdefault(version["image_id"], []).append(version)
    if image_ids is not None:
        released = list(versions)  # at most a page's versions
    for release in (
        Release.objects.filter(version__in=released)
        .order_by("-released_at", "-id")
        .values("id", "version_id", "released_at", "withdrawn_at", "marketplace_version_id")
    ):
        versions[release["version_id"]]["releases"].append(release)
    available = LocalImage.objects.filter(state=LocalImageState.AVAILABLE, version__in=released)
    rows = available.order_by("zone__code", "storage_type", "id").values_list(
        "version_id", "provider_image_id", "zone__code", "storage_type"
    )
    for version_id, provider_id, zone, storage_type in rows:
        versions[version_id]["local_images"].append((provider_id, zone, storage_type))
    return by_image


_SLUG = re.compile(r"[-a-zA-Z0-9_]+\Z")
_SEGMENT = re.compile(r"[^/]+\Z")
# What reverse() leaves unquoted (django.urls.resolvers).
_SAFE = RFC3986_SUBDELIMS + "/~:@"


class _SbomLinks:
    """Where a version's SBOM downloads are (catalog.sbom; a session is needed): paths on
    this host. A version without a manifest answers them with a 404 that says so.

    reverse() is called once per build with placeholders, not twice per version (it was most
    of the build's time: 10,000 calls at 1,000 images); each path is the pattern with the
    version's values quoted as reverse() quotes them. A value reverse() would refuse goes
    through reverse(), which raises as it did.
    """

    _MARKS = ("label0mark", "arch0mark", "name0mark")

    def __init__(self) -> None:
        self.patterns: dict[str, str] = {}
        for key in ("spdx", "cyclonedx"):
            path = reverse(f"catalog:version_{key}", args=self._MARKS)
            path = path.replace("{", "{{").replace("}", "}}")
            for n, mark in enumerate(self._MARKS):
                path = path.replace(mark, f"{{{n}}}")
            self.patterns[key] = path

    def __call__(self, label: str, version: dict[str, Any]) -> dict[str, str]:
        arch, name = version["arch"], version["name"]
        if not (_SLUG.match(label) and _SEGMENT.match(arch) and _SEGMENT.match(name)):
            args = [label, arch, name]
            return {key: reverse(f"catalog:version_{key}", args=args) for key in self.patterns}
        values = (_quoted(label), _quoted(arch), _quoted(name))
        return {key: pattern.format(*values) for key, pattern in self.patterns.items()}


@functools.lru_cache(maxsize=4096)
def _quoted(value: str) -> str:
    return quote(value, safe=_SAFE)


def _version(
    version: dict[str, Any], image: dict[str, Any], current_id: int | None, links: _SbomLinks
) -> dict[str, Any]:
    latest = version["releases"][0] if version["releases"] else None
    types = list(image["commercial_types"] or [])
    return {
        "name": version["name"],
        "arch": version["arch"],
        "state": version["state"],
        "current": version["id"] == current_id,
        "released_at": _date(version["released_at"]),
        "withdrawn_at": _date(latest["withdrawn_at"]) if latest else None,
        "marketplace_version_id": latest["marketplace_version_id"] if latest else "",
        "upstream_serial": version["upstream_serial"],
        "sbom": links(image["label"], version),
        "local_images": [
            {
                "id": provider_id,
                "zone": zone,
                "arch": version["arch"],
                "type": storage_type,
                "compatible_commercial_types": types,
            }
            for provider_id, zone, storage_type in version["local_images"]
        ],
    }


def _current_version_id(versions: list[dict[str, Any]]) -> int | None:
    """The version of the latest open release (what the label resolves to)."""
    best: tuple[dt.datetime, int] | None = None
    current: int | None = None
    for version in versions:
        for row in version["releases"]:
            key = (row["released_at"], row["id"])
            if row["withdrawn_at"] is None and (best is None or key > best):
                best, current = key, version["id"]
    return current


def _image(
    image: dict[str, Any], versions: list[dict[str, Any]], links: _SbomLinks
) -> dict[str, Any]:
    current_id = _current_version_id(versions)
    rendered = [_version(v, image, current_id, links) for v in versions]
    current = next((v for v in rendered if v["current"]), None)
    return {
        "label": image["label"],
        "name": image["name"],
        "kind": image["kind"],
        "description": image["description"],
        "logo": image["logo"],
        "category": image["category__name"],
        "architectures": list(image["architectures"] or []),
        "commercial_types": list(image["commercial_types"] or []),
        "storage_types": list(image["storage_types"] or []),
        "base_image": image["base_image__label"],
        "replacement": image["replacement__label"],
        "state": image["state"],
        "valid_until": _date(image["deprecation_date"]),
        "lifecycle": _lifecycle(image),
        "current_version": current,
        "versions": [v for v in rendered if not v["current"]],
    }


MAX_PER_PAGE = 100


def build_feed(page: int | None = None, per_page: int = 20) -> dict[str, Any]:
    """The feed document, from plain rows (no model instances): four queries, or five for
    a page, and each added section's own (see `add_section`).

    With `page`, as the Marketplace API pages its lists: that page of `per_page` images (by
    label), `total_count` still counting them all.
    """
    rows = Image.objects.order_by("label").values(*_IMAGE_COLUMNS)
    if page is None:
        images = list(rows)
        total = len(images)
        versions = _versions_by_image()
    else:
        images = list(rows[(page - 1) * per_page : page * per_page])
        total = Image.objects.count()
        versions = _versions_by_image([image["id"] for image in images])
    links = _SbomLinks()
    documents = [_image(image, versions.get(image["id"], []), links) for image in images]
    for section in _SECTIONS:
        # A fixed number of queries per section, whatever the number of images.
        values = section([image["id"] for image in images] if page is not None else None)
        for image, document in zip(images, documents, strict=True):
            document.update(values.get(image["id"], {}))
    return {"feed_version": FEED_VERSION, "total_count": total, "images": documents}


# Sections an app above lifecycle adds to each image (advisories: its security exposure),
# given the image ids (None: all) and giving {image id: {key: value}}; and the rows those
# values are read from, which the fingerprint covers as it covers the feed's own columns.
Section = Callable[[list[int] | None], dict[int, dict[str, Any]]]
_SECTIONS: list[Section] = []


def add_section(section: Section, columns: list[tuple[Any, tuple[str, ...]]]) -> None:
    """Add a section to every image of the feed (once, from an app's `ready`)."""
    if section not in _SECTIONS:
        _SECTIONS.append(section)
        _FINGERPRINT_COLUMNS.extend(columns)


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
            "storage_types",
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
        ImageVersion.objects.filter(pk__in=Release.objects.values("version_id")),
        ("id", "image_id", "name", "arch", "state", "released_at", "created_at", "upstream_serial"),
    ),
    (
        Release.objects.all(),
        ("id", "version_id", "released_at", "withdrawn_at", "marketplace_version_id"),
    ),
    (
        LocalImage.objects.filter(
            state=LocalImageState.AVAILABLE,
            version__in=Release.objects.values("version_id"),
        ),
        ("id", "version_id", "zone_id", "storage_type", "provider_image_id"),
    ),
    (Zone.objects.all(), ("id", "code")),
]


def _row_text(columns: tuple[str, ...]) -> Func:
    """One text per row holding every column (NULL marked apart from any value), joined by
    the database with SQL's || (SQLite and PostgreSQL): reading it costs no conversion of
    dates or JSON in Python."""
    parts: list[Any] = []
    for column in columns:
        parts += [Coalesce(Cast(column, TextField()), Value("\u2205")), Value("\x1f")]
    return Func(*parts, template="(%(expressions)s)", arg_joiner=" || ", output_field=TextField())


def fingerprint() -> str:
    """The feed's ETag, without building the feed: from the change stamp (one query, see
    lifecycle.feed_stamp), or from every column the feed is built from when the stamp's
    triggers are missing.

    A strong ETag: the document is a deterministic function of these columns (and of
    FEED_VERSION, FEED_SHAPE and the sections added), and the stamp changes whenever one of
    them does, so equal fingerprints mean byte-identical documents.
    """
    digest = hashlib.sha256(f"feed {FEED_VERSION} shape {FEED_SHAPE}".encode())
    for section in _SECTIONS:
        digest.update(f"\x1fsection {section.__module__}.{section.__qualname__}".encode())
    stamp = feed_stamp.stamp()
    if stamp is not None:
        digest.update(f"\x1estamp {stamp}".encode())
        return f'"{digest.hexdigest()[:32]}"'
    for queryset, columns in _FINGERPRINT_COLUMNS:
        digest.update(b"\x1e" + queryset.model._meta.db_table.encode())
        rows = queryset.order_by("id").annotate(row_text=_row_text(columns))
        for text in rows.values_list("row_text", flat=True).iterator(chunk_size=5000):
            digest.update(text.encode() + b"\x1d")
    return f'"{digest.hexdigest()[:32]}"'


# The last document this process built, with its fingerprint: a request for an unchanged feed
# (the common case: scripts poll it) costs the fingerprint, not the build. One slot, so the
# memory it holds is one document; a tuple, replaced whole, so threads never see half of it.
_last_built: tuple[str, bytes] | None = None


def document(etag: str) -> bytes:
    """The feed's bytes for fingerprint `etag`: the ones built last if it has not changed."""
    global _last_built
    last = _last_built
    if last is not None and last[0] == etag:
        return last[1]
    with _collector_paused():
        body = render(build_feed())
    _last_built = (etag, body)
    return body


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused: the whole document is 35,000 small dicts and
    lists at 1,000 images, none in a cycle, and the collections their creation set off were a
    quarter of the build's time. Back to how it was after, whatever happens."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
