"""Small factories for the build tests: the demo image an upstream server offers, and a
version published for real through builds.publish."""

from __future__ import annotations

import shutil
from pathlib import Path

from builds.models import Build
from builds.publish import publish
from catalog.choices import ChecksumFormat
from catalog.models import Image, ImageVersion, UpstreamSource, Zone
from tests.builds.upstream_server import UpstreamServer, sha256_file
from tests.catalog.factories import os_image

DEMO_FILE = "debian-12-demo-amd64.qcow2"


def serve_demo_file(upstream: UpstreamServer, disk: Path, name: str = DEMO_FILE) -> str:
    """Put `disk` on the upstream mirror as `name`, listed in a SHA256SUMS with a serial."""
    shutil.copyfile(disk, upstream.root / name)
    (upstream.root / "SHA256SUMS").write_text(
        f"# serial: 20261126-1\n{sha256_file(upstream.root / name)}  {name}\n"
    )
    return name


def demo_image(upstream: UpstreamServer) -> Image:
    """debian_demo, whose upstream source is the demo file on `upstream`."""
    image = os_image("debian_demo", channel=upstream.url())
    UpstreamSource.objects.filter(image=image).update(
        file_pattern=r"debian-12-demo-amd64\.qcow2",
        checksum_file="SHA256SUMS",
        checksum_format=ChecksumFormat.GNU,
        serial_pattern=r"(?m)^# serial: (?P<serial>\S+)$",
    )
    return image


def publish_for_real(version: ImageVersion, artefact: Path) -> Build:
    """Publish `artefact` as `version` in every zone of localcloud through builds.publish,
    as the version's build would (its state left at "publishing" for the caller to set)."""
    build = Build.objects.create(
        image=version.image, arch=version.arch, state="publishing", version=version
    )
    publish(
        build_id=build.pk,
        version=version,
        artefact=artefact,
        zones=Zone.objects.all(),
        log=lambda line: None,
        progress=lambda *args: None,
        cancelled=lambda: False,
    )
    return build
