"""SBOM downloads of a version's manifest (catalog.sbom): both documents valid against the
official JSON schemas vendored in tests/schemas/sbom (see its README), purls with the
distribution's qualifiers, the source package where the manifest knows it, deterministic bytes,
a clear 404 without a manifest, login required, constant queries, linked from the feed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from referencing import Registry, Resource

from catalog import sbom
from catalog.choices import ImageKind
from catalog.models import Image, ImageVersion
from lifecycle.models import Release
from tests.catalog.factories import category, instantapp, os_image

pytestmark = pytest.mark.django_db

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "sbom"
CREATED = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)

# As the customize stage records them (Debian 12, libc6 also for i386), with one entry of a
# version built before sources were recorded.
DEBIAN_MANIFEST = [
    {
        "name": "bsdutils",
        "version": "1:2.38.1-5+deb12u3",
        "arch": "amd64",
        "source": "util-linux",
        "source_version": "2.38.1-5+deb12u3",
    },
    {
        "name": "libc6",
        "version": "2.36-9+deb12u4",
        "arch": "amd64",
        "source": "glibc",
        "source_version": "2.36-9+deb12u4",
    },
    {
        "name": "libc6",
        "version": "2.36-9+deb12u4",
        "arch": "i386",
        "source": "glibc",
        "source_version": "2.36-9+deb12u4",
    },
    {
        "name": "adduser",
        "version": "3.134",
        "arch": "all",
        "source": "adduser",
        "source_version": "3.134",
    },
    {
        "name": "libstdc++6",
        "version": "12.2.0-14",
        "arch": "amd64",
        "source": "gcc-12",
        "source_version": "12.2.0-14",
    },
    {"name": "bash", "version": "5.2.15-2+b8", "arch": "amd64", "source": "bash",
     "source_version": "5.2.15-2"},
    {"name": "old-entry", "version": "1.0-1", "arch": "amd64"},
]  # fmt: skip


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def spdx_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_schema("spdx-2.3.schema.json"))


def cyclonedx_registry() -> Registry:
    """The two schemas the BOM schema references, from the vendored files (never fetched)."""
    referenced = [_schema("spdx.schema.json"), _schema("jsf-0.82.schema.json")]
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in referenced
    )


def cyclonedx_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_schema("bom-1.5.schema.json"), registry=cyclonedx_registry())


def debian(label: str = "debian_bookworm") -> Image:
    image = os_image(label)
    image.distribution, image.version = "Debian", "12"
    image.save()
    return image


def version_of(image: Image, manifest: list[dict[str, str]], name: str = "2026-11-26"):
    return ImageVersion.objects.create(
        image=image,
        name=name,
        manifest=manifest,
        created_at=CREATED,
        artefact_sha256="ab" * 32,
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def spdx_url(version: ImageVersion) -> str:
    return reverse("catalog:version_spdx", args=[version.image.label, version.arch, version.name])


def cyclonedx_url(version: ImageVersion) -> str:
    args = [version.image.label, version.arch, version.name]
    return reverse("catalog:version_cyclonedx", args=args)


def test_the_vendored_schemas_resolve_their_references_locally() -> None:
    bom_schema = cyclonedx_validator().schema
    jsonschema.Draft7Validator.check_schema(bom_schema)
    jsonschema.Draft7Validator.check_schema(spdx_validator().schema)
    resolver = cyclonedx_registry().resolver(base_uri=bom_schema["$id"])
    assert resolver.lookup("spdx.schema.json").contents["$id"].endswith("/spdx.schema.json")
    assert resolver.lookup("jsf-0.82.schema.json#/definitions/signature").contents


def test_both_documents_are_valid_against_the_official_schemas(viewer) -> None:
    version = version_of(debian(), DEBIAN_MANIFEST)
    client = logged_in(viewer)

    response = client.get(spdx_url(version))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/spdx+json"
    assert "debian_bookworm-2026-11-26-x86_64.spdx.json" in response["Content-Disposition"]
    document = json.loads(response.content)
    spdx_validator().validate(document)

    response = client.get(cyclonedx_url(version))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.cyclonedx+json")
    bom = json.loads(response.content)
    cyclonedx_validator().validate(bom)

    assert bom["specVersion"] == "1.5" and document["spdxVersion"] == "SPDX-2.3"
    assert len(bom["components"]) == len(DEBIAN_MANIFEST)
    assert len(document["packages"]) == len(DEBIAN_MANIFEST) + 1  # and the image itself


def test_the_validators_refuse_a_broken_document() -> None:
    version = version_of(debian(), DEBIAN_MANIFEST)
    document, bom = sbom.spdx(version), sbom.cyclonedx(version)
    del document["packages"][1]["SPDXID"]
    bom["components"][0]["type"] = "rpm-package"
    with pytest.raises(jsonschema.ValidationError):
        spdx_validator().validate(document)
    with pytest.raises(jsonschema.ValidationError):
        cyclonedx_validator().validate(bom)


def test_debian_packages_carry_purls_with_distro_and_their_source_package() -> None:
    version = version_of(debian(), DEBIAN_MANIFEST)
    components = {(c["name"], c["purl"]): c for c in sbom.cyclonedx(version)["components"]}
    purls = [purl for _, purl in components]
    assert purls == [
        "pkg:deb/debian/adduser@3.134?arch=all&distro=debian-12",
        "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12&upstream=bash%405.2.15-2",
        "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12"
        "&upstream=util-linux%402.38.1-5%2Bdeb12u3",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc",
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=i386&distro=debian-12&upstream=glibc",
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12",
        "pkg:deb/debian/old-entry@1.0-1?arch=amd64&distro=debian-12",
    ]
    libc6 = components["libc6", purls[3]]
    assert libc6["pedigree"]["ancestors"] == [
        {
            "type": "library",
            "name": "glibc",
            "version": "2.36-9+deb12u4",
            "purl": "pkg:deb/debian/glibc@2.36-9%2Bdeb12u4?arch=source&distro=debian-12",
        }
    ]
    assert libc6["supplier"] == {"name": "Debian"}
    assert "pedigree" not in components["old-entry", purls[-1]]  # its source is unknown

    packages = {p["name"] + p["SPDXID"][-9:]: p for p in sbom.spdx(version)["packages"]}
    by_purl = {p["externalRefs"][0]["referenceLocator"]: p for p in packages.values() if
               p["SPDXID"] != "SPDXRef-Image"}  # fmt: skip
    assert sorted(by_purl) == purls
    assert by_purl[purls[3]]["sourceInfo"] == "built from source package glibc 2.36-9+deb12u4"
    assert by_purl[purls[3]]["supplier"] == "Organization: Debian"
    assert "sourceInfo" not in by_purl[purls[-1]]


def test_rpm_epochs_are_a_qualifier_and_each_distribution_has_its_namespace() -> None:
    rocky = os_image("rocky_9")
    rocky.distribution, rocky.version = "Rocky Linux", "9"
    rocky.save()
    version = version_of(
        rocky,
        [
            {"name": "openssl-libs", "version": "1:3.0.7-27.el9", "arch": "x86_64",
             "source": "openssl", "source_version": "3.0.7-27.el9"},
            {"name": "gpg-pubkey", "version": "350d275d-6279464b", "arch": ""},
        ],
    )  # fmt: skip
    bom = sbom.cyclonedx(version)
    assert [c["purl"] for c in bom["components"]] == [
        "pkg:rpm/rocky/gpg-pubkey@350d275d-6279464b?distro=rocky-9",
        "pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=rocky-9&epoch=1"
        "&upstream=openssl%403.0.7-27.el9",
    ]
    assert bom["components"][1]["pedigree"]["ancestors"][0]["purl"] == (
        "pkg:rpm/rocky/openssl@3.0.7-27.el9?arch=src&distro=rocky-9"
    )
    cyclonedx_validator().validate(bom)

    expected = {
        ("Ubuntu", "22.04"): ("deb", "ubuntu", "ubuntu-22.04"),
        ("AlmaLinux", "9"): ("rpm", "almalinux", "almalinux-9"),
        ("CentOS Stream", "10"): ("rpm", "centos", "centos-10"),
        ("Fedora", "41"): ("rpm", "fedora", "fedora-41"),
        ("Plan 9", "4"): ("generic", "", ""),
    }
    for (name, release), (kind, namespace, distro) in expected.items():
        image = Image(kind=ImageKind.OS, distribution=name, version=release)
        found = sbom.distribution_of(image)
        assert (found.purl_type, found.namespace, found.distro) == (kind, namespace, distro)
    unknown = sbom.distribution_of(Image(kind=ImageKind.OS, distribution="Plan 9"))
    assert sbom.purl(unknown, "rc", "1.0", arch="amd64") == "pkg:generic/rc@1.0?arch=amd64"


def test_an_instantapp_names_its_packages_after_its_base_image() -> None:
    ubuntu = os_image("ubuntu_jammy")
    ubuntu.distribution, ubuntu.version = "Ubuntu", "22.04"
    ubuntu.save()
    app = instantapp("wordpress", ubuntu)
    version = version_of(
        app, [{"name": "apache2", "version": "2.4.52-1ubuntu4.12", "arch": "amd64"}]
    )
    bom = sbom.cyclonedx(version)
    assert bom["components"][0]["purl"] == (
        "pkg:deb/ubuntu/apache2@2.4.52-1ubuntu4.12?arch=amd64&distro=ubuntu-22.04"
    )
    assert bom["metadata"]["component"]["name"] == "wordpress"


def test_the_documents_are_the_same_bytes_each_time_with_ids_from_the_version(viewer) -> None:
    image = debian()
    version = version_of(image, DEBIAN_MANIFEST)
    client = logged_in(viewer)
    first = client.get(cyclonedx_url(version)).content
    assert client.get(cyclonedx_url(version)).content == first
    assert client.get(spdx_url(version)).content == client.get(spdx_url(version)).content
    # The same packages in another order give the same document.
    version.manifest = list(reversed(DEBIAN_MANIFEST))
    version.save()
    assert client.get(cyclonedx_url(version)).content == first

    bom, document = sbom.cyclonedx(version), sbom.spdx(version)
    assert bom["metadata"]["timestamp"] == document["creationInfo"]["created"]
    assert bom["metadata"]["timestamp"] == "2026-11-26T09:30:00Z"
    other = version_of(image, DEBIAN_MANIFEST, name="2026-11-27")
    assert sbom.cyclonedx(other)["serialNumber"] != bom["serialNumber"]
    assert sbom.spdx(other)["documentNamespace"] != document["documentNamespace"]
    assert bom["serialNumber"].removeprefix("urn:uuid:") in document["documentNamespace"]
    spdx_ids = [p["SPDXID"] for p in document["packages"]]
    assert len(set(spdx_ids)) == len(spdx_ids)
    assert [p["SPDXID"] for p in sbom.spdx(other)["packages"]] == spdx_ids


def test_a_version_without_a_manifest_has_no_sbom_and_says_so(viewer) -> None:
    version = version_of(debian(), [])
    client = logged_in(viewer)
    for url in (spdx_url(version), cyclonedx_url(version)):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {
            "error": "No package manifest is recorded for this version: it has no SBOM."
        }
    page = client.get(version.get_absolute_url()).content.decode()
    assert "no software bill of materials" in page
    assert spdx_url(version) not in page
    with pytest.raises(sbom.NoManifest):
        sbom.spdx(version)


def test_the_version_page_links_both_downloads(viewer) -> None:
    version = version_of(debian(), DEBIAN_MANIFEST)
    page = logged_in(viewer).get(version.get_absolute_url()).content.decode()
    assert f'href="{spdx_url(version)}"' in page
    assert f'href="{cyclonedx_url(version)}"' in page


def test_a_download_needs_a_login() -> None:
    version = version_of(debian(), DEBIAN_MANIFEST)
    for url in (spdx_url(version), cyclonedx_url(version)):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_download_costs_the_same_queries_whatever_the_manifest_size(viewer) -> None:
    image = debian()
    app = Image.objects.create(
        kind=ImageKind.INSTANTAPP,
        label="gitlab",
        name="GitLab",
        category=category("InstantApps"),
        base_image=image,
    )
    small = version_of(app, DEBIAN_MANIFEST[:2], name="2026-11-01")
    large = version_of(
        app,
        [{"name": f"pkg{i}", "version": "1.0", "arch": "amd64", "source": f"src{i // 3}",
          "source_version": "1.0"} for i in range(500)],
        name="2026-11-02",
    )  # fmt: skip
    client = logged_in(viewer)
    counts = []
    for version in (small, large):
        for url in (spdx_url(version), cyclonedx_url(version)):
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            counts.append(len(queries))
    assert len(set(counts)) == 1, counts


def test_the_feed_links_each_version_to_its_downloads(viewer) -> None:
    version = version_of(debian(), DEBIAN_MANIFEST)
    Release.objects.create(version=version, released_at=CREATED)
    client = logged_in(viewer)
    feed = client.get(reverse("lifecycle:feed")).json()
    current = feed["images"][0]["current_version"]
    assert current["sbom"] == {"spdx": spdx_url(version), "cyclonedx": cyclonedx_url(version)}
    response = client.get(current["sbom"]["cyclonedx"])
    assert response.status_code == 200
    cyclonedx_validator().validate(json.loads(response.content))
