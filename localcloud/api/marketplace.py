"""Marketplace v2 (public, no authentication, as on Scaleway) and the operator's publishing.

Public API, `/marketplace/v2/...`: images, versions, local images, categories, shaped like the
OpenAPI contract (bare objects on get, `{"<plural>": [...], "total_count": n}` on lists).

Publishing, `/localcloud/v1/marketplace/...` (Scaleway's internal business, done here by the
dashboard's publisher with plain HTTP JSON):

- `PUT    /localcloud/v1/marketplace/images/{label}`                create or update an image
- `GET    /localcloud/v1/marketplace/images/{label}`                the image with its versions
- `DELETE /localcloud/v1/marketplace/images/{label}`                remove it and its versions
- `PUT    /localcloud/v1/marketplace/images/{label}/valid-until`    deprecate / un-deprecate
- `PUT    /localcloud/v1/marketplace/images/{label}/current-version` pin the resolved version
- `POST   /localcloud/v1/marketplace/images/{label}/versions`       publish a new version
- `POST   /localcloud/v1/marketplace/versions/{version_id}/local-images` add local images
- `DELETE /localcloud/v1/marketplace/versions/{version_id}`         delete a version
- `DELETE /localcloud/v1/marketplace/local-images/{local_image_id}` delete a local image

A local image's `id` is the Instance image id it stands for: that is what `create_server`
receives. A label resolves to the image's *current* version: the pinned one, else the latest
published.

Hook published by `install(cloud)`:
`resolve_marketplace_image(zone, image, commercial_type) -> str | None` (see `resolve`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from localcloud.http import (
    ApiError,
    Request,
    Response,
    invalid_argument,
    is_uuid,
    new_id,
    no_content,
    not_found,
    ok,
    page_of_list,
)

PUBLIC = "/marketplace/v2"
OPERATOR = "/localcloud/v1/marketplace"
IMAGE = "marketplace_image"
VERSION = "marketplace_version"
LOCAL_IMAGE = "marketplace_local_image"
CATEGORY = "marketplace_category"
LOCAL_IMAGE_TYPES = ("instance_local", "instance_sbs")
# The contract's enum also has "unknown_type": an operator may publish it, as real Scaleway may
# answer it, so that clients can be tested against it; a label never resolves to it.
PUBLISHABLE_TYPES = (*LOCAL_IMAGE_TYPES, "unknown_type")
ARCHES = ("x86_64", "arm64")
# Category ids are derived from their names, so a category is the same everywhere.
CATEGORY_NAMESPACE = uuid.UUID("5c0d8a8e-7e2a-4a39-9d6a-6d61726b6574")


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _parse_date(value: Any, name: str) -> str | None:
    """An RFC 3339 date, normalised to Scaleway's `...Z` form; None clears."""
    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid_argument(name, "invalid_date", f"{value!r} is not an RFC 3339 date") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _expired(cloud: Any, image: dict[str, Any]) -> bool:
    until = image.get("valid_until")
    if not until:
        return False
    expires = dt.datetime.fromisoformat(until.replace("Z", "+00:00"))
    return bool(expires <= cloud.clock.now())


def _image_by_label(cloud: Any, label: str) -> dict[str, Any] | None:
    found: list[dict[str, Any]] = cloud.store.all(IMAGE, lambda i: i["label"] == label)
    return found[0] if found else None


def _image_or_404(cloud: Any, label: str) -> dict[str, Any]:
    image = _image_by_label(cloud, label)
    if image is None:
        raise not_found("MarketplaceImage", label)
    return image


def _versions(cloud: Any, image_id: str) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = cloud.store.all(VERSION, lambda v: v["_image_id"] == image_id)
    return versions


def current_version(cloud: Any, image: dict[str, Any]) -> dict[str, Any] | None:
    """The pinned version, else the latest published one."""
    pinned = image.get("_current_version_id")
    if pinned:
        version: dict[str, Any] | None = cloud.store.get(VERSION, pinned)
        if version is not None:
            return version
    versions = [v for v in _versions(cloud, image["id"]) if v.get("published_at")]
    if not versions:
        return None
    return max(versions, key=lambda v: (v["published_at"], v["_seq"]))


def _render_local(cloud: Any, local: dict[str, Any]) -> dict[str, Any]:
    image = cloud.store.get(IMAGE, local["_image_id"]) or {}
    return {**_public(local), "label": image.get("label", "")}


def _local_images_of(cloud: Any, version_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = cloud.store.all(
        LOCAL_IMAGE, lambda li: li["_version_id"] == version_id
    )
    return found


def _ensure_categories(cloud: Any, names: list[str]) -> None:
    for name in names:
        cid = str(uuid.uuid5(CATEGORY_NAMESPACE, name))
        if cloud.store.get(CATEGORY, cid) is None:
            cloud.store.put(CATEGORY, {"id": cid, "name": name, "description": ""})


def _page(request: Request, items: list[dict[str, Any]], key: str) -> Response:
    return page_of_list(request, items, key, default_size=20)


# --- public API -------------------------------------------------------------------------------


def list_images(cloud: Any, request: Request) -> Response:
    # include_eol is required by the contract and always sent by the SDK; default to the
    # safe side (hide end-of-life images) for plain HTTP callers that omit it.
    include_eol = request.flag("include_eol", False)
    images = cloud.store.all(IMAGE)
    if not include_eol:
        images = [i for i in images if not _expired(cloud, i)]
    category = request.arg("category")
    if category:
        named = cloud.store.get(CATEGORY, category) if is_uuid(category) else None
        wanted = {category, named["name"]} if named else {category}
        images = [i for i in images if wanted & set(i["categories"])]
    arch = request.arg("arch")
    if arch:
        with_arch = {li["_image_id"] for li in cloud.store.all(LOCAL_IMAGE) if li["arch"] == arch}
        images = [i for i in images if i["id"] in with_arch]
    order = request.arg("order_by") or "name_asc"
    field, _, direction = order.rpartition("_")
    if field not in ("name", "created_at", "updated_at"):
        raise invalid_argument("order_by", "invalid_value", f"unknown order {order!r}")
    images.sort(key=lambda i: (i.get(field) or "", i["id"]), reverse=direction == "desc")
    return _page(request, [_public(i) for i in images], "images")


def get_image(cloud: Any, request: Request, image_id: str) -> Response:
    image = cloud.store.get(IMAGE, image_id)
    if image is None:
        raise not_found("MarketplaceImage", image_id)
    return ok(_public(image))


def list_versions(cloud: Any, request: Request) -> Response:
    image_id = request.arg("image_id")
    if not image_id:
        raise invalid_argument("image_id")
    if cloud.store.get(IMAGE, image_id) is None:
        raise not_found("MarketplaceImage", image_id)
    order = request.arg("order_by") or "created_at_asc"
    if order not in ("created_at_asc", "created_at_desc"):
        raise invalid_argument("order_by", "invalid_value", f"unknown order {order!r}")
    versions = sorted(
        _versions(cloud, image_id),
        key=lambda v: (v["created_at"], v["_seq"]),
        reverse=order.endswith("desc"),
    )
    return _page(request, [_public(v) for v in versions], "versions")


def get_version(cloud: Any, request: Request, version_id: str) -> Response:
    version = cloud.store.get(VERSION, version_id)
    if version is None:
        raise not_found("MarketplaceVersion", version_id)
    return ok(_public(version))


def list_local_images(cloud: Any, request: Request) -> Response:
    scopes = [n for n in ("image_id", "version_id", "image_label") if request.arg(n)]
    if len(scopes) > 1:
        raise invalid_argument(
            scopes[1], "one_of", "only one of image_id, version_id, image_label may be set"
        )
    version_id, image_id, image_label = (
        request.arg("version_id"),
        request.arg("image_id"),
        request.arg("image_label"),
    )
    if version_id:
        if cloud.store.get(VERSION, version_id) is None:
            raise not_found("MarketplaceVersion", version_id)
        locals_ = _local_images_of(cloud, version_id)
    elif image_id or image_label:
        if image_id:
            image = cloud.store.get(IMAGE, image_id)
            if image is None:
                raise not_found("MarketplaceImage", image_id)
        else:
            assert image_label
            image = _image_or_404(cloud, image_label)
        version = current_version(cloud, image)
        locals_ = _local_images_of(cloud, version["id"]) if version else []
    else:
        # No scope: the local images of every image's current version.
        locals_ = []
        for image in cloud.store.all(IMAGE):
            version = current_version(cloud, image)
            if version:
                locals_.extend(_local_images_of(cloud, version["id"]))
    for name, field in (("zone", "zone"), ("arch", "arch"), ("type", "type")):
        value = request.arg(name)
        if value and not (name == "type" and value == "unknown_type"):
            locals_ = [li for li in locals_ if li[field] == value]
    order = request.arg("order_by") or "type_asc"
    field, _, direction = order.rpartition("_")
    if field not in ("type", "created_at"):
        raise invalid_argument("order_by", "invalid_value", f"unknown order {order!r}")
    key = "type" if field == "type" else "_created_at"
    locals_.sort(key=lambda li: (li[key], li["zone"], li["arch"]), reverse=direction == "desc")
    return _page(request, [_render_local(cloud, li) for li in locals_], "local_images")


def get_local_image(cloud: Any, request: Request, local_image_id: str) -> Response:
    local = cloud.store.get(LOCAL_IMAGE, local_image_id)
    if local is None:
        raise not_found("MarketplaceLocalImage", local_image_id)
    return ok(_render_local(cloud, local))


def list_categories(cloud: Any, request: Request) -> Response:
    categories = sorted(cloud.store.all(CATEGORY), key=lambda c: c["name"])
    return _page(request, categories, "categories")


def get_category(cloud: Any, request: Request, category_id: str) -> Response:
    category = cloud.store.get(CATEGORY, category_id)
    if category is None:
        raise not_found("MarketplaceCategory", category_id)
    return ok(category)


# --- operator publishing ----------------------------------------------------------------------


def _operator_view(cloud: Any, image: dict[str, Any]) -> dict[str, Any]:
    current = current_version(cloud, image)
    versions = sorted(_versions(cloud, image["id"]), key=lambda v: (v["created_at"], v["_seq"]))
    return {
        **_public(image),
        "current_version_id": current["id"] if current else None,
        "pinned_version_id": image.get("_current_version_id"),
        "deprecated": _expired(cloud, image),
        "versions": [
            {
                **_public(v),
                "local_images": [
                    _render_local(cloud, li) for li in _local_images_of(cloud, v["id"])
                ],
            }
            for v in versions
        ],
    }


def put_image(cloud: Any, request: Request, label: str) -> Response:
    """Create or update (only the fields given) the image with this label."""
    data = request.json()
    if data.get("label") not in (None, label):
        raise invalid_argument("label", "mismatch", "the body's label must match the path")
    with cloud.store.lock:
        now = cloud.clock.iso()
        image = _image_by_label(cloud, label)
        if image is None:
            if not data.get("name"):
                raise invalid_argument("name", help_message="a new image needs a name")
            image = {
                "id": new_id(),
                "name": "",
                "description": "",
                "logo": "",
                "categories": [],
                "created_at": now,
                "updated_at": now,
                "valid_until": None,
                "label": label,
                "_current_version_id": None,
            }
        for name in ("name", "description", "logo"):
            if data.get(name) is not None:
                image[name] = str(data[name])
        if data.get("categories") is not None:
            if not isinstance(data["categories"], list):
                raise invalid_argument("categories", "invalid_type", "a list of names")
            image["categories"] = [str(c) for c in data["categories"]]
            _ensure_categories(cloud, image["categories"])
        if "valid_until" in data:
            image["valid_until"] = _parse_date(data["valid_until"], "valid_until")
        image["updated_at"] = now
        cloud.store.put(IMAGE, image)
    return ok(_operator_view(cloud, image))


def get_operator_image(cloud: Any, request: Request, label: str) -> Response:
    return ok(_operator_view(cloud, _image_or_404(cloud, label)))


def delete_image(cloud: Any, request: Request, label: str) -> Response:
    with cloud.store.lock:
        image = _image_or_404(cloud, label)
        for version in _versions(cloud, image["id"]):
            _delete_version(cloud, version)
        cloud.store.delete(IMAGE, image["id"])
    return no_content()


def set_valid_until(cloud: Any, request: Request, label: str) -> Response:
    """`{"valid_until": "2026-01-01T00:00:00Z"}` deprecates; `{"valid_until": null}` clears."""
    data = request.json()
    if "valid_until" not in data:
        raise invalid_argument("valid_until", help_message="a date, or null to clear it")
    with cloud.store.lock:
        image = _image_or_404(cloud, label)
        image["valid_until"] = _parse_date(data["valid_until"], "valid_until")
        image["updated_at"] = cloud.clock.iso()
        cloud.store.put(IMAGE, image)
    return ok(_operator_view(cloud, image))


def set_current_version(cloud: Any, request: Request, label: str) -> Response:
    """`{"version_id": "<id>"}` pins; `{"version_id": null}` follows the latest published."""
    data = request.json()
    with cloud.store.lock:
        image = _image_or_404(cloud, label)
        version_id = data.get("version_id")
        if version_id:
            version = cloud.store.get(VERSION, version_id)
            if version is None or version["_image_id"] != image["id"]:
                raise not_found("MarketplaceVersion", version_id)
        image["_current_version_id"] = version_id or None
        image["updated_at"] = cloud.clock.iso()
        cloud.store.put(IMAGE, image)
    return ok(_operator_view(cloud, image))


def create_version(cloud: Any, request: Request, label: str) -> Response:
    """`{"name": "2026-09-01"}`: published now."""
    data = request.json()
    if not data.get("name"):
        raise invalid_argument("name")
    with cloud.store.lock:
        image = _image_or_404(cloud, label)
        now = cloud.clock.iso()
        seq = int(cloud.store.meta("marketplace_version_seq", 0)) + 1
        cloud.store.set_meta("marketplace_version_seq", seq)
        version = {
            "id": new_id(),
            "name": str(data["name"]),
            "created_at": now,
            "updated_at": now,
            "published_at": now,
            "_image_id": image["id"],
            # Versions published within the same second still sort in publication order.
            "_seq": seq,
        }
        cloud.store.put(VERSION, version)
        image["updated_at"] = now
        cloud.store.put(IMAGE, image)
    return ok(_public(version))


def _local_image(cloud: Any, version: dict[str, Any], item: Any, now: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise invalid_argument("local_images", "invalid_type", "a list of objects")
    image_id = item.get("instance_image_id") or item.get("id")
    if not image_id or not is_uuid(image_id):
        raise invalid_argument("instance_image_id", help_message="the Instance image id (UUID)")
    zone = item.get("zone")
    if not zone:
        raise invalid_argument("zone")
    arch = item.get("arch") or "x86_64"
    if arch not in ARCHES:
        raise invalid_argument("arch", "invalid_value", f"one of {ARCHES}")
    type_ = item.get("type") or "instance_local"
    if type_ not in PUBLISHABLE_TYPES:
        raise invalid_argument("type", "invalid_value", f"one of {PUBLISHABLE_TYPES}")
    types = item.get("compatible_commercial_types") or []
    if not isinstance(types, list):
        raise invalid_argument("compatible_commercial_types", "invalid_type", "a list")
    existing = cloud.store.get(LOCAL_IMAGE, image_id)
    if existing is not None and existing["_version_id"] != version["id"]:
        raise ApiError(
            409,
            "conflict",
            f"instance image {image_id} is already published in version {existing['_version_id']}",
            resource="MarketplaceLocalImage",
            resource_id=image_id,
        )
    return {
        "id": image_id,
        "compatible_commercial_types": [str(t).upper() for t in types],
        "arch": arch,
        "zone": zone,
        "type": type_,
        "_version_id": version["id"],
        "_image_id": version["_image_id"],
        "_created_at": existing["_created_at"] if existing else now,
    }


def add_local_images(cloud: Any, request: Request, version_id: str) -> Response:
    """`{"local_images": [{instance_image_id, zone, arch, compatible_commercial_types, type}]}`
    or one such object as the body; re-adding an id to the same version updates it."""
    data = request.json()
    items = data.get("local_images", [data])
    if not isinstance(items, list) or not items:
        raise invalid_argument("local_images", help_message="at least one local image")
    with cloud.store.lock:
        version = cloud.store.get(VERSION, version_id)
        if version is None:
            raise not_found("MarketplaceVersion", version_id)
        now = cloud.clock.iso()
        built = [_local_image(cloud, version, item, now) for item in items]
        for local in built:
            cloud.store.put(LOCAL_IMAGE, local)
    return ok({"local_images": [_render_local(cloud, li) for li in built]})


def _delete_version(cloud: Any, version: dict[str, Any]) -> None:
    for local in _local_images_of(cloud, version["id"]):
        cloud.store.delete(LOCAL_IMAGE, local["id"])
    cloud.store.delete(VERSION, version["id"])
    image = cloud.store.get(IMAGE, version["_image_id"])
    if image is not None and image.get("_current_version_id") == version["id"]:
        image["_current_version_id"] = None  # back to the latest published
        cloud.store.put(IMAGE, image)


def delete_version(cloud: Any, request: Request, version_id: str) -> Response:
    with cloud.store.lock:
        version = cloud.store.get(VERSION, version_id)
        if version is None:
            raise not_found("MarketplaceVersion", version_id)
        _delete_version(cloud, version)
    return no_content()


def delete_local_image(cloud: Any, request: Request, local_image_id: str) -> Response:
    if not cloud.store.delete(LOCAL_IMAGE, local_image_id):
        raise not_found("MarketplaceLocalImage", local_image_id)
    return no_content()


# --- the hook for the Instance API ------------------------------------------------------------


def deprecated_error(image: dict[str, Any]) -> ApiError:
    return ApiError(
        400,
        "invalid_request_error",
        f"image {image['label']} is deprecated since {image['valid_until']}: "
        "it can no longer start new instances",
    )


def resolve(cloud: Any, zone: str, image: str, commercial_type: str | None) -> str | None:
    """The Instance image id a server of `commercial_type` in `zone` must boot for `image`.

    `image` is a label (resolved through the image's current version, first local image of
    that zone, instance_local before instance_sbs, whose compatible_commercial_types contains
    the upper-cased commercial type; any when commercial_type is empty) or a local-image id
    (returned as is when it is in that zone and compatible).

    Returns None when nothing matches (unknown label or id, no local image for that zone or
    commercial type): the caller then treats `image` as a plain Instance image id or refuses.
    RAISES localcloud.http.ApiError(400, "invalid_request_error", "image <label> is deprecated
    since <date>: it can no longer start new instances") when the image is past valid_until:
    let it propagate so that the server creation answers that error.
    """
    wanted = (commercial_type or "").upper()

    def compatible(local: dict[str, Any]) -> bool:
        types = local["compatible_commercial_types"]
        return not wanted or not types or wanted in types

    local = cloud.store.get(LOCAL_IMAGE, image) if is_uuid(image) else None
    if local is not None:
        owner = cloud.store.get(IMAGE, local["_image_id"])
        if owner is not None and _expired(cloud, owner):
            raise deprecated_error(owner)
        return local["id"] if local["zone"] == zone and compatible(local) else None
    owner = _image_by_label(cloud, image)
    if owner is None:
        return None
    if _expired(cloud, owner):
        raise deprecated_error(owner)
    version = current_version(cloud, owner)
    if version is None:
        return None
    candidates = sorted(
        (
            li
            for li in _local_images_of(cloud, version["id"])
            if li["zone"] == zone and li["type"] in LOCAL_IMAGE_TYPES
        ),
        key=lambda li: (li["type"], li["_created_at"]),
    )
    for candidate in candidates:
        if compatible(candidate):
            return str(candidate["id"])
    return None


def install(cloud: Any) -> None:
    """Publish `resolve_marketplace_image(zone, image, commercial_type) -> str | None`."""
    cloud.add_hook(
        "resolve_marketplace_image",
        lambda zone, image, commercial_type: resolve(cloud, zone, image, commercial_type),
    )


def register(router: Any) -> None:
    # Public, as on Scaleway: no X-Auth-Token needed.
    router.add("GET", f"{PUBLIC}/images", list_images, public=True)
    router.add("GET", f"{PUBLIC}/images/{{image_id}}", get_image, public=True)
    router.add("GET", f"{PUBLIC}/versions", list_versions, public=True)
    router.add("GET", f"{PUBLIC}/versions/{{version_id}}", get_version, public=True)
    router.add("GET", f"{PUBLIC}/local-images", list_local_images, public=True)
    router.add("GET", f"{PUBLIC}/local-images/{{local_image_id}}", get_local_image, public=True)
    router.add("GET", f"{PUBLIC}/categories", list_categories, public=True)
    router.add("GET", f"{PUBLIC}/categories/{{category_id}}", get_category, public=True)
    # Operator publishing (the operator prefix is never authenticated).
    router.add("PUT", f"{OPERATOR}/images/{{label}}", put_image)
    router.add("GET", f"{OPERATOR}/images/{{label}}", get_operator_image)
    router.add("DELETE", f"{OPERATOR}/images/{{label}}", delete_image)
    router.add("PUT", f"{OPERATOR}/images/{{label}}/valid-until", set_valid_until)
    router.add("PUT", f"{OPERATOR}/images/{{label}}/current-version", set_current_version)
    router.add("POST", f"{OPERATOR}/images/{{label}}/versions", create_version)
    router.add("POST", f"{OPERATOR}/versions/{{version_id}}/local-images", add_local_images)
    router.add("DELETE", f"{OPERATOR}/versions/{{version_id}}", delete_version)
    router.add("DELETE", f"{OPERATOR}/local-images/{{local_image_id}}", delete_local_image)
