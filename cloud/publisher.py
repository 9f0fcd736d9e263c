"""Publishing releases and deprecations to the Marketplace: one port, two backends.

Scaleway's public Marketplace API is read-only: publishing there is the provider's internal
business. So the factory talks to the Marketplace through this port, whose backend depends on
the cloud it is pointed at:

- `LocalcloudPublisher` ("localcloud"): localcloud's operator Marketplace API over HTTP, the
  full Marketplace: images, versions with their local images per zone, architecture and
  storage type (`instance_local` or `instance_sbs`, each compatible with the commercial types
  the zone's product list says boot from that storage: see cloud.products), the
  current version a label resolves to, and `valid_until` (a deprecated image leaves
  `list_images(include_eol=False)` and can no longer start new servers).
- `FeedOnlyPublisher` ("feed"): a Scaleway account without Marketplace write access. Nothing
  is recorded in the Marketplace; the instance images carry tags (`factory:released`,
  `factory:current`, `factory:deprecated`, `factory:valid-until=<date>`) and the dashboard's
  JSON feed is the catalogue that consoles and scripts read. The cloud enforces nothing: a
  deprecated image can still start servers by id.

Retiring an image (`retire`) removes its versions from the localcloud Marketplace and keeps
the image entry, deprecated; the feed-only backend has nothing to remove.

`MARKETPLACE_PUBLISHER` chooses ("localcloud" or "feed"); unset, the backend is "localcloud"
when SCW_API_URL points at a localcloud (its /localcloud/v1/endpoints answers), else "feed".

The callers pass catalogue rows (an image, a version, its local images) but this module reads
only their attributes: the cloud adapter does not import the apps above it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Iterable
from typing import Any, Protocol

import requests
from django.conf import settings

from cloud import clients, products
from cloud.retries import CloudError, backoff, call, sleep

log = logging.getLogger("cloud")

OPERATOR_PREFIX = "/localcloud/v1/marketplace"
RELEASED_TAG = "factory:released"
CURRENT_TAG = "factory:current"
DEPRECATED_TAG = "factory:deprecated"
VALID_UNTIL_PREFIX = "factory:valid-until="
BACKENDS = ("localcloud", "feed")
RETRYABLE = frozenset({429, 502, 503, 504})


class Publisher(Protocol):
    """What lifecycle code calls to make releases and deprecations visible to customers."""

    name: str

    def describe(self) -> str:
        """One paragraph: what this backend records and what the cloud then enforces."""
        ...

    def publish_release(self, image: Any, version: Any, local_images: Iterable[Any]) -> str:
        """Publish `version` of `image` with its `local_images` (LocalImage rows: zone,
        storage_type, provider_image_id). Returns the Marketplace version id, or "" when the
        backend keeps none. Idempotent: publishing the same version again reuses what exists."""
        ...

    def set_current(self, image: Any, version: Any) -> None:
        """Make `version` the one the image's label resolves to."""
        ...

    def set_valid_until(self, image: Any, when: dt.datetime | None) -> None:
        """Deprecate the image from `when` on (None clears it)."""
        ...

    def retire(self, image: Any, deprecated_at: dt.datetime) -> None:
        """Stop offering a retired image's versions (their instance images are deleted
        next); the image stays deprecated since `deprecated_at`. Idempotent."""
        ...


def _iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _local_image_entries(
    image: Any, version: Any, local_images: Iterable[Any]
) -> list[dict[str, Any]]:
    """One Marketplace local image per (zone, storage type) of `version` (one architecture),
    compatible with the commercial types that the zone's own product list says boot from
    that storage, of that architecture, and allowed by the image (none listed: all).

    The product list is read once per zone, for every zone, before anything is returned:
    a zone whose list cannot be read raises CloudError and nothing is published. A local
    image that no type could boot (the image allows only types of the other storage) is
    left out, with a warning."""
    published = [local for local in local_images if local.provider_image_id]
    for local in published:
        if local.storage_type not in products.STORAGE_TYPES:
            raise CloudError(
                f"{version} in {local.zone.code}: unknown storage type "
                f"{local.storage_type!r} (one of {', '.join(products.STORAGE_TYPES)})."
            )
    zones = sorted({local.zone.code for local in published})
    offered = {zone: products.server_types(zone) for zone in zones}
    allowed = list(image.commercial_types or [])
    entries = []
    for local in sorted(published, key=lambda li: (li.zone.code, li.storage_type)):
        zone = local.zone.code
        types = products.compatible_types(offered[zone], local.storage_type, version.arch, allowed)
        if not types:
            log.warning(
                "%s in %s (%s): no %s type of the zone boots it%s; left out of the Marketplace",
                version,
                zone,
                local.storage_type,
                version.arch,
                f" among the image's {', '.join(allowed)}" if allowed else "",
            )
            continue
        entries.append(
            {
                "instance_image_id": local.provider_image_id,
                "zone": zone,
                "arch": version.arch,
                "compatible_commercial_types": types,
                "type": local.storage_type,
            }
        )
    return entries


# --- localcloud -------------------------------------------------------------------------------


class LocalcloudPublisher:
    """localcloud's operator Marketplace API: the full Marketplace."""

    name = "localcloud"

    def __init__(self, api_url: str, secret_key: str = "") -> None:
        self.api_url = api_url.rstrip("/")
        self.secret_key = secret_key

    def describe(self) -> str:
        return (
            "localcloud Marketplace: each release is a Marketplace version with one local "
            "image per zone, architecture and storage type (instance_local, instance_sbs), "
            "compatible with the commercial types the zone's product list says boot from "
            "that storage, within the image's own list; the image's label resolves to the current "
            "version (withdraw moves it back); earlier versions stay launchable by image id; "
            "a deprecation sets valid_until, which hides the image from "
            "list_images(include_eol=False) and refuses new servers from it."
        )

    # HTTP

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, retry: bool = True
    ) -> dict[str, Any]:
        """One operator call, retried on throttling and unavailability; errors in words.

        `retry=False` for a call that is not idempotent (creating a version): after a lost
        answer the next release attempt finds the version by name instead."""
        url = f"{self.api_url}{OPERATOR_PREFIX}{path}"
        headers = {"X-Auth-Token": self.secret_key} if self.secret_key else {}
        what = f"Marketplace {method} {path}"
        attempts = settings.CLOUD_RETRY_ATTEMPTS if retry else 1
        timeout = float(settings.CLOUD_REQUEST_TIMEOUT_SECONDS)
        error = CloudError(f"{what}: not attempted")
        for attempt in range(1, attempts + 1):
            try:
                response = requests.request(
                    method, url, json=body, headers=headers, timeout=timeout
                )
            except requests.RequestException as exc:
                error = CloudError(f"{what}: cannot reach the API ({type(exc).__name__})")
            else:
                if response.status_code < 400:
                    return response.json() if response.content else {}
                error = _error_of(response, what)
                if response.status_code not in RETRYABLE:
                    raise error
            if attempt < attempts:
                log.warning("%s; attempt %d of %d, retrying", error, attempt, attempts)
                sleep(backoff(attempt))
        if attempts == 1:
            raise error
        raise CloudError(
            f"{error.message} (gave up after {attempts} attempts)",
            status=error.status,
            type_=error.type,
        )

    def _ensure_image(self, image: Any, **extra: Any) -> dict[str, Any]:
        body = {
            "name": image.name,
            "description": image.description,
            "logo": image.logo,
            "categories": [image.category.name] if image.category_id else [],
            **extra,
        }
        return self._request("PUT", f"/images/{image.label}", body)

    @staticmethod
    def _version_named(view: dict[str, Any], name: str) -> dict[str, Any] | None:
        matching = [v for v in view.get("versions", []) if v.get("name") == name]
        return matching[-1] if matching else None

    # the port

    def publish_release(self, image: Any, version: Any, local_images: Iterable[Any]) -> str:
        # Every zone's product list is read before the first write: a failure there leaves
        # the Marketplace as it was.
        entries = _local_image_entries(image, version, local_images)
        if not entries:
            raise CloudError(
                f"{version}: no local image to publish (none is available, or no commercial "
                "type the image allows boots from the storage types it was published with)."
            )
        view = self._ensure_image(image)
        # A release that failed half-way left its version behind: reuse it, do not duplicate.
        existing = self._version_named(view, version.name)
        if existing is None:
            existing = self._request(
                "POST", f"/images/{image.label}/versions", {"name": version.name}, retry=False
            )
        self._request("POST", f"/versions/{existing['id']}/local-images", {"local_images": entries})
        return str(existing["id"])

    def set_current(self, image: Any, version: Any) -> None:
        try:
            view = self._request("GET", f"/images/{image.label}")
        except CloudError as exc:
            if not exc.not_found:
                raise
            view = {}
        found = self._version_named(view, version.name)
        if found is None:
            raise CloudError(
                f"{version} is not in the Marketplace: release it before making it current."
            )
        self._request("PUT", f"/images/{image.label}/current-version", {"version_id": found["id"]})

    def set_valid_until(self, image: Any, when: dt.datetime | None) -> None:
        # An image never released has no Marketplace entry yet: create it, deprecated.
        self._ensure_image(image, valid_until=_iso(when))

    def retire(self, image: Any, deprecated_at: dt.datetime) -> None:
        # The entry stays, deprecated, so that its label still answers "deprecated since";
        # its versions go, with local images that would name deleted instance images.
        view = self._ensure_image(image, valid_until=_iso(deprecated_at))
        for version in view.get("versions", []):
            try:
                self._request("DELETE", f"/versions/{version['id']}")
            except CloudError as exc:
                if not exc.not_found:
                    raise


def _error_of(response: requests.Response, what: str) -> CloudError:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = str(data.get("message") or "").strip() or f"HTTP {response.status_code}"
    if data.get("type") == "not_found" and data.get("resource_id"):
        message = f"{message} ({data.get('resource')} {data.get('resource_id')})"
    status = response.status_code
    return CloudError(
        f"{what}: {message} [HTTP {status}]", status=status, type_=str(data.get("type") or "")
    )


# --- feed only --------------------------------------------------------------------------------


class FeedOnlyPublisher:
    """No Marketplace write access: tags on the instance images, and the dashboard's feed."""

    name = "feed"

    def describe(self) -> str:
        return (
            "Feed only (no Marketplace write access): nothing is published in the "
            "Marketplace; released versions' instance images are tagged factory:released "
            "(and factory:current for the current one), deprecated ones factory:deprecated "
            "and factory:valid-until=<date>; the dashboard's JSON feed is the catalogue. "
            "The cloud enforces nothing: customers launch by image id, and a deprecated "
            "image can still start servers."
        )

    def _retag(self, local: Any, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Change the tags of one instance image, keeping the ones we do not manage."""
        if not local.provider_image_id:
            return
        api = clients.instance_api()
        zone = local.zone.code
        what = f"tag image {local.provider_image_id} in {zone}"
        current = call(api.get_image, zone=zone, image_id=local.provider_image_id, what=what)
        tags = list(current.image.tags or [])
        drop = set(remove)
        wanted = [t for t in tags if t not in drop and not _matches_prefix(t, drop)]
        wanted += [t for t in add if t not in wanted]
        if wanted != tags:
            call(
                api.update_image,
                zone=zone,
                image_id=local.provider_image_id,
                tags=wanted,
                what=what,
            )

    def publish_release(self, image: Any, version: Any, local_images: Iterable[Any]) -> str:
        for local in local_images:
            self._retag(local, add=[RELEASED_TAG])
        return ""

    def set_current(self, image: Any, version: Any) -> None:
        for other in image.versions.all():
            if other.pk == version.pk:
                continue
            for local in other.local_images.select_related("zone"):
                self._retag(local, remove=[CURRENT_TAG])
        for local in version.local_images.select_related("zone"):
            self._retag(local, add=[RELEASED_TAG, CURRENT_TAG])

    def set_valid_until(self, image: Any, when: dt.datetime | None) -> None:
        add = [DEPRECATED_TAG, f"{VALID_UNTIL_PREFIX}{_iso(when)}"] if when else []
        for version in image.versions.all():
            for local in version.local_images.select_related("zone"):
                self._retag(local, add=add, remove=[DEPRECATED_TAG, VALID_UNTIL_PREFIX])

    def retire(self, image: Any, deprecated_at: dt.datetime) -> None:
        # Nothing to do: the tags live on the instance images, which retirement deletes,
        # and the feed lists only available local images.
        return None


def _matches_prefix(tag: str, prefixes: set[str]) -> bool:
    return any(p.endswith("=") and tag.startswith(p) for p in prefixes)


# --- choosing the backend ---------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _is_localcloud(api_url: str) -> bool:
    """True when `api_url` answers localcloud's own endpoint listing (asked once per URL)."""
    try:
        response = requests.get(f"{api_url.rstrip('/')}/localcloud/v1/endpoints", timeout=3)
    except requests.RequestException:
        return False
    return response.status_code == 200


def backend_name() -> str:
    """The backend the environment asks for (see the module docstring)."""
    chosen = os.environ.get("MARKETPLACE_PUBLISHER", "").strip().lower()
    if chosen:
        if chosen not in BACKENDS:
            raise CloudError(
                f"MARKETPLACE_PUBLISHER must be one of {', '.join(BACKENDS)}, not {chosen!r}."
            )
        return chosen
    api_url = os.environ.get("SCW_API_URL", "").strip()
    return "localcloud" if api_url and _is_localcloud(api_url) else "feed"


def get_publisher() -> Publisher:
    """The publisher for the cloud the environment points at."""
    if backend_name() == "localcloud":
        api_url = os.environ.get("SCW_API_URL", "").strip()
        if not api_url:
            raise CloudError("MARKETPLACE_PUBLISHER=localcloud needs SCW_API_URL (its URL).")
        return LocalcloudPublisher(api_url, os.environ.get("SCW_SECRET_KEY", ""))
    return FeedOnlyPublisher()
