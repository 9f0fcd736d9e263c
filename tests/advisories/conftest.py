"""Fixtures of the advisories tests: the local OSV server and a catalogue to match."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from catalog.choices import VersionState
from catalog.models import Image, ImageVersion
from tests.advisories.osv_server import OsvServer
from tests.catalog.factories import os_image


@pytest.fixture
def osv_server(settings, tmp_path) -> Iterator[OsvServer]:
    """A running OsvServer, with the settings pointing at it and a fresh download cache."""
    server = OsvServer()
    server.start()
    settings.OSV_BASE_URL = server.base_url
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.OSV_TIMEOUT = 2
    try:
        yield server
    finally:
        server.stop()


def deb(name: str, version: str, source: str | None = None, source_version: str | None = None):
    entry: dict[str, Any] = {"name": name, "version": version, "arch": "amd64"}
    if source is not None:
        entry["source"] = source
        entry["source_version"] = source_version or version
    return entry


def debian_image(label: str = "debian_bookworm", release: str = "12") -> Image:
    image = os_image(label)
    image.distribution = "Debian"
    image.version = release
    image.save()
    return image


def version(image: Image, name: str, manifest: list[dict[str, Any]], **extra: Any) -> ImageVersion:
    return ImageVersion.objects.create(
        image=image,
        name=name,
        manifest=manifest,
        state=extra.pop("state", VersionState.BUILT),
        **extra,
    )
