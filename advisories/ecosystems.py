"""Which OSV ecosystem covers which image, from the catalogue's distributions and releases.

An OS image's `distribution` and `version` name its ecosystem (`Debian` 12 -> `Debian:12`,
`Ubuntu` 22.04 -> `Ubuntu:22.04:LTS`, plus `Ubuntu:Pro:22.04:LTS` when the image follows
extended support); an InstantApp follows its base image. Distributions without an OSV
ecosystem (CentOS Stream, Fedora) are "not covered". The exports downloaded are the
ecosystems' first words, or the `OSV_ECOSYSTEMS` setting when it is set.
"""

from __future__ import annotations

from django.conf import settings

from catalog.choices import DeprecationBasis
from catalog.models import Image
from lifecycle import versions as orderings

# Lower-case distribution -> the export's name.
_EXPORTS = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "almalinux": "AlmaLinux",
    "alma": "AlmaLinux",
    "rocky linux": "Rocky Linux",
    "rocky": "Rocky Linux",
}


def _os_image(image: Image) -> Image:
    if image.is_os or image.base_image is None:
        return image
    return image.base_image


def ecosystems_for(image: Image) -> list[str]:
    """The versioned OSV ecosystems an image's packages are matched in ([] = not covered).

    Reads `image.base_image` and `upstream` (select them related for many images).
    """
    os_image = _os_image(image)
    upstream = getattr(os_image, "upstream", None)
    extended = upstream is not None and upstream.deprecation_basis == DeprecationBasis.EXTENDED
    return ecosystems_of(os_image.distribution, os_image.version, extended=extended)


def ecosystems_of(distribution: str, release: str, *, extended: bool = False) -> list[str]:
    """The ecosystems of a distribution's release; `extended`: it follows extended support
    (Ubuntu's fixes after standard support are under `Ubuntu:Pro:...`)."""
    export = _EXPORTS.get(distribution.strip().lower())
    release = release.strip()
    if export is None or not release:
        return []
    if export == "Ubuntu":
        lts = release.endswith(".04") and release[:2].isdigit() and int(release[:2]) % 2 == 0
        name = f"{release}:LTS" if lts else release
        found = [f"Ubuntu:{name}"]
        if extended:
            found.append(f"Ubuntu:Pro:{name}")
        return found
    if export in ("AlmaLinux", "Rocky Linux"):
        release = release.split(".")[0]
    return [f"{export}:{release}"]


def scheme_for(image: Image) -> str | None:
    """The version ordering of an image's packages ("dpkg", "rpm"), None if unknown."""
    return orderings.scheme_for(_os_image(image).distribution)


def export_of(ecosystem: str) -> str:
    """`Ubuntu:Pro:22.04:LTS` -> `Ubuntu`."""
    return ecosystem.split(":", 1)[0]


def configured_exports(images: list[Image]) -> list[str]:
    """The exports to download: OSV_ECOSYSTEMS if set, else those the catalogue needs."""
    if settings.OSV_ECOSYSTEMS:
        return sorted(set(settings.OSV_ECOSYSTEMS))
    return sorted({export_of(eco) for image in images for eco in ecosystems_for(image)})
