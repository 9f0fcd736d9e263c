"""A version's package manifest as a software bill of materials: SPDX 2.3 and CycloneDX 1.5,
both JSON.

Each installed package is identified by a package URL (purl) with the distribution's
qualifiers, as vulnerability scanners expect them::

    pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc
    pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=rocky-9&epoch=1&upstream=openssl

The type and namespace come from the image's distribution (an InstantApp's from its base
image); a distribution this module does not know gives ``pkg:generic`` purls. An RPM epoch is
the ``epoch`` qualifier (the purl spec's rule for rpm); a Debian epoch stays in the version.
When the manifest knows the source package (``source``, ``source_version``: recorded by the
customize stage since issue 17), it is the ``upstream`` qualifier (``name`` or
``name@version`` when the source version differs), SPDX's ``sourceInfo`` and a CycloneDX
pedigree ancestor; versions built earlier simply have none.

The documents are functions of the version alone: packages sorted, identifiers derived from
the image label, architecture and version name (uuid5), dates from the version's creation
time. A version without a manifest has no SBOM (``NoManifest``): an empty one would read as
"no packages", which is never true of an image.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.conf import settings

from catalog.choices import ImageKind

if TYPE_CHECKING:
    from catalog.models import Image, ImageVersion

TOOL = "image-factory"
SPDX_VERSION = "SPDX-2.3"
CYCLONEDX_VERSION = "1.5"
# uuid5 namespace of the documents' identifiers (a fixed, arbitrary UUID).
_NAMESPACE = uuid.UUID("6f1d8c2e-3b0a-5e47-9c1d-2a8b7e4f5c60")


class NoManifest(Exception):
    """The version has no package manifest recorded (adopted, or built before manifests)."""


@dataclass(frozen=True)
class Distribution:
    """How a distribution's packages are named in purls."""

    purl_type: str  # deb, rpm or generic
    namespace: str  # debian, ubuntu, rocky, ...; empty for generic
    distro: str  # the distro qualifier: debian-12, ubuntu-22.04, rocky-9; may be empty
    supplier: str  # the distribution's name, as the packages' supplier


# Catalogue distribution name (lower case) -> purl type, namespace, distro qualifier prefix
# (the os-release ID).
KNOWN_DISTRIBUTIONS = {
    "debian": ("deb", "debian", "debian"),
    "ubuntu": ("deb", "ubuntu", "ubuntu"),
    "rocky linux": ("rpm", "rocky", "rocky"),
    "almalinux": ("rpm", "almalinux", "almalinux"),
    "centos stream": ("rpm", "centos", "centos"),
    "fedora": ("rpm", "fedora", "fedora"),
}


def distribution_of(image: Image) -> Distribution:
    """The distribution an image's packages come from: its own, or its base image's for an
    InstantApp."""
    os_image = image.base_image if image.kind == ImageKind.INSTANTAPP else image
    name = (os_image.distribution if os_image else "").strip()
    release = (os_image.version if os_image else "").strip()
    known = KNOWN_DISTRIBUTIONS.get(name.lower())
    if known is None:
        return Distribution("generic", "", "", name)
    purl_type, namespace, prefix = known
    return Distribution(purl_type, namespace, f"{prefix}-{release}" if release else "", name)


def _quote(value: str) -> str:
    # Percent-encoding as the purl spec asks; a colon needs none.
    return quote(value, safe="").replace("%3A", ":")


def purl(
    distribution: Distribution,
    name: str,
    version: str,
    *,
    arch: str = "",
    upstream: str = "",
) -> str:
    """The package URL of one package; qualifiers sorted by key, empty ones left out."""
    qualifiers = {"arch": arch, "distro": distribution.distro, "upstream": upstream}
    if distribution.purl_type == "rpm":
        epoch, sep, rest = version.partition(":")
        if sep and epoch.isdigit():
            qualifiers["epoch"], version = epoch, rest
    path = f"{distribution.namespace}/{_quote(name)}" if distribution.namespace else _quote(name)
    text = f"pkg:{distribution.purl_type}/{path}"
    if version:
        text += f"@{_quote(version)}"
    query = "&".join(f"{k}={_quote(v)}" for k, v in sorted(qualifiers.items()) if v)
    return f"{text}?{query}" if query else text


@dataclass(frozen=True)
class Package:
    """One manifest entry, as both documents describe it."""

    name: str
    version: str
    arch: str
    source: str
    source_version: str
    purl: str
    source_purl: str


def packages(version: ImageVersion) -> list[Package]:
    """The version's manifest as packages, sorted by name, architecture and version, exact
    repeats dropped. Raises NoManifest when it has none."""
    manifest = version.manifest or []
    if not manifest:
        raise NoManifest(f"{version.image.label} {version.name} ({version.arch}) has no manifest")
    distribution = distribution_of(version.image)
    result: dict[tuple[str, str, str], Package] = {}
    for entry in manifest:
        name, ver, arch = entry["name"], entry.get("version", ""), entry.get("arch", "")
        source, source_version = entry.get("source", ""), entry.get("source_version", "")
        upstream = ""
        if source and (source, source_version) != (name, ver):
            upstream = source if source_version in ("", ver) else f"{source}@{source_version}"
        source_arch = "src" if distribution.purl_type == "rpm" else "source"
        result[(name, arch, ver)] = Package(
            name=name,
            version=ver,
            arch=arch,
            source=source,
            source_version=source_version,
            purl=purl(distribution, name, ver, arch=arch, upstream=upstream),
            source_purl=purl(distribution, source, source_version or ver, arch=source_arch)
            if source
            else "",
        )
    return [result[key] for key in sorted(result)]


def _document_uuid(version: ImageVersion) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{version.image.label}/{version.arch}/{version.name}")


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _title(version: ImageVersion) -> str:
    return f"{version.image.label} {version.name} ({version.arch})"


_SPDX_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def _spdx_id(package: Package) -> str:
    # Readable and unique: the name and arch made safe, and a digest of what identifies it.
    digest = hashlib.sha256(f"{package.name}\0{package.arch}\0{package.version}".encode())
    readable = _SPDX_ID_UNSAFE.sub("-", f"{package.name}-{package.arch}").strip("-")
    return f"SPDXRef-Package-{readable}-{digest.hexdigest()[:8]}"


def spdx(version: ImageVersion) -> dict[str, Any]:
    """The SPDX 2.3 document of a version's packages: the image is the described package,
    CONTAINS each installed package."""
    items = packages(version)
    image, distribution = version.image, distribution_of(version.image)
    root: dict[str, Any] = {
        "SPDXID": "SPDXRef-Image",
        "name": image.label,
        "versionInfo": version.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "OPERATING_SYSTEM",
        "summary": f"{image.name}, {version.arch}",
    }
    if version.artefact_sha256:
        root["checksums"] = [{"algorithm": "SHA256", "checksumValue": version.artefact_sha256}]
    described: list[dict[str, Any]] = []
    for package in items:
        entry: dict[str, Any] = {
            "SPDXID": _spdx_id(package),
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": package.purl,
                }
            ],
        }
        if distribution.supplier:
            entry["supplier"] = f"Organization: {distribution.supplier}"
        if package.source:
            entry["sourceInfo"] = (
                f"built from source package {package.source} "
                f"{package.source_version or package.version}"
            )
        described.append(entry)
    return {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": _title(version),
        "documentNamespace": (
            f"{settings.SITE_URL}/spdx/{image.label}-{version.arch}-{version.name}-"
            f"{_document_uuid(version)}"
        ),
        "creationInfo": {"created": _timestamp(version.created_at), "creators": [f"Tool: {TOOL}"]},
        "documentDescribes": ["SPDXRef-Image"],
        "packages": [root, *described],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-Image",
            },
            *(
                {
                    "spdxElementId": "SPDXRef-Image",
                    "relationshipType": "CONTAINS",
                    "relatedSpdxElement": entry["SPDXID"],
                }
                for entry in described
            ),
        ],
    }


def cyclonedx(version: ImageVersion) -> dict[str, Any]:
    """The CycloneDX 1.5 BOM of a version's packages: the image is the metadata component,
    each installed package a library component (its purl as bom-ref)."""
    items = packages(version)
    image, distribution = version.image, distribution_of(version.image)
    root: dict[str, Any] = {
        "type": "operating-system",
        "bom-ref": "image",
        "name": image.label,
        "version": version.name,
        "description": f"{image.name}, {version.arch}",
    }
    if version.artefact_sha256:
        root["hashes"] = [{"alg": "SHA-256", "content": version.artefact_sha256}]
    components: list[dict[str, Any]] = []
    for package in items:
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": package.purl,
            "name": package.name,
            "version": package.version,
            "purl": package.purl,
        }
        if distribution.supplier:
            component["supplier"] = {"name": distribution.supplier}
        if package.source:
            component["pedigree"] = {
                "ancestors": [
                    {
                        "type": "library",
                        "name": package.source,
                        "version": package.source_version or package.version,
                        "purl": package.source_purl,
                    }
                ]
            }
        components.append(component)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": CYCLONEDX_VERSION,
        "serialNumber": f"urn:uuid:{_document_uuid(version)}",
        "version": 1,
        "metadata": {
            "timestamp": _timestamp(version.created_at),
            "lifecycles": [{"phase": "build"}],
            "tools": {"components": [{"type": "application", "name": TOOL}]},
            "component": root,
        },
        "components": components,
        "dependencies": [{"ref": "image", "dependsOn": [c["bom-ref"] for c in components]}],
    }


FORMATS = {"spdx": spdx, "cyclonedx": cyclonedx}
