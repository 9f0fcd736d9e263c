"""The marks the factory leaves on what it creates, and lookups by them.

Every resource the factory creates carries the tags ["image-factory", "build:<id>"], and
every object it uploads sits under "image-factory/build-<id>/". What a test run creates also
carries "test-run:<id>" (and the build tag only when the run belongs to a build). That is
what makes a publish resumable (after a timeout, a lookup by tag finds what the lost call
created instead of creating a duplicate), a cancel clean (discard finds everything of a
build), a test run's takeover clean (it finds what the dead worker left), and the janitor
possible (it finds everything of the factory).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

from cloud.cancel import CancelCheck
from cloud.retries import call

FACTORY_TAG = "image-factory"
OBJECT_PREFIX = "image-factory/"
_BUILD_TAG = re.compile(r"^build:(\d+)$")
_RUN_TAG = re.compile(r"^test-run:(\d+)$")
_BUILD_KEY = re.compile(r"^image-factory/build-(\d+)/")


def build_tag(build_id: int) -> str:
    return f"build:{build_id}"


def tags_for(build_id: int) -> list[str]:
    """The tags of every resource a build creates."""
    return [FACTORY_TAG, build_tag(build_id)]


def run_tag(test_run_id: int) -> str:
    """The tag of everything one test run creates."""
    return f"test-run:{test_run_id}"


def tags_for_run(test_run_id: int, build_id: int | None = None) -> list[str]:
    """The tags of every resource a test run creates (a re-run belongs to no build)."""
    build = [build_tag(build_id)] if build_id is not None else []
    return [FACTORY_TAG, *build, run_tag(test_run_id)]


def object_prefix(build_id: int) -> str:
    """The key prefix of a build's objects in the artefact bucket."""
    return f"{OBJECT_PREFIX}build-{build_id}/"


def build_id_of(tags: Iterable[str] | None) -> int | None:
    """The build id in a resource's tags, or None when it carries none."""
    for tag in tags or ():
        found = _BUILD_TAG.match(tag)
        if found:
            return int(found.group(1))
    return None


def run_id_of(tags: Iterable[str] | None) -> int | None:
    """The test run id in a resource's tags, or None when it carries none."""
    for tag in tags or ():
        found = _RUN_TAG.match(tag)
        if found:
            return int(found.group(1))
    return None


def build_id_of_key(key: str) -> int | None:
    """The build id in an object key under the factory's prefix."""
    found = _BUILD_KEY.match(key)
    return int(found.group(1)) if found else None


def is_factory(tags: Iterable[str] | None) -> bool:
    return FACTORY_TAG in (tags or ())


def is_of_build(tags: Iterable[str] | None, build_id: int) -> bool:
    """True when the tags are exactly what `tags_for(build_id)` put there (both of them)."""
    present = set(tags or ())
    return set(tags_for(build_id)) <= present


def _tagged(items: Iterable[Any], build_id: int) -> list[Any]:
    # The tag filter of list calls is applied again here: its exact semantics (one tag,
    # all of several, prefix) differ between APIs, and a wrong match would reuse a resource
    # of another build.
    return [item for item in items if is_of_build(getattr(item, "tags", None), build_id)]


def find_snapshots(
    api: Any, zone: str, build_id: int, *, cancelled: CancelCheck | None = None
) -> list[Any]:
    """The instance snapshots of a build in a zone."""
    found = call(
        api.list_snapshots_all,
        zone=zone,
        tags=build_tag(build_id),
        what=f"list snapshots in {zone}",
        cancelled=cancelled,
    )
    return _tagged(found, build_id)


def find_images(
    api: Any, zone: str, build_id: int, *, cancelled: CancelCheck | None = None
) -> list[Any]:
    """The instance images of a build in a zone."""
    found = call(
        api.list_images_all,
        zone=zone,
        tags=build_tag(build_id),
        what=f"list images in {zone}",
        cancelled=cancelled,
    )
    return _tagged(found, build_id)


def find_block_snapshots(
    block_api: Any, zone: str, build_id: int, *, cancelled: CancelCheck | None = None
) -> list[Any]:
    """The Block Storage (SBS) snapshots of a build in a zone (the Block list takes its tag
    filter as a list), deleted ones left out."""
    found = call(
        block_api.list_snapshots_all,
        zone=zone,
        tags=[build_tag(build_id)],
        include_deleted=False,
        what=f"list block snapshots in {zone}",
        cancelled=cancelled,
    )
    return _tagged(found, build_id)


def find_one(
    list_all: Callable[..., Iterable[Any]],
    *,
    what: str,
    carrying: Iterable[str],
    name: str = "",
    states: Collection[str] = (),
    cancelled: CancelCheck | None = None,
    **filters: Any,
) -> Any | None:
    """The first resource an SDK list call returns that carries every tag of `carrying` (and
    is named `name`, and is in one of `states`, when they are given); None when there is none.

    This is how a create whose answer was lost finds what it made after all (`call`'s
    `recover`). `filters` (the zone, the API's own tag filter) and `name` narrow the list
    call; the tags and the name are checked again here, as APIs match them differently.
    """
    if name:
        filters["name"] = name
    found = call(list_all, what=what, cancelled=cancelled, **filters)
    wanted = set(carrying)
    for item in found:
        if not wanted <= set(getattr(item, "tags", None) or ()):
            continue
        if name and item.name != name:
            continue
        if states and item.state not in states:
            continue
        return item
    return None
