"""Small factories for catalogue rows used across test modules."""

from __future__ import annotations

import datetime as dt

from catalog.choices import Arch, ChecksumFormat, ImageKind
from catalog.models import Category, Image, UpstreamLifecycle, UpstreamSource


def category(name: str = "Distributions") -> Category:
    return Category.objects.get_or_create(name=name)[0]


def os_image(
    label: str,
    *,
    eol: dt.date | None = None,
    rolling: bool = False,
    arches: tuple[str, ...] = (Arch.X86_64,),
    channel: str = "https://cloud.debian.org/images/cloud/bookworm/latest/",
) -> Image:
    image = Image.objects.create(
        kind=ImageKind.OS,
        label=label,
        name=label.replace("_", " ").title(),
        category=category(),
        architectures=list(arches),
        distribution=label.split("_")[0],
    )
    UpstreamLifecycle.objects.create(
        image=image,
        eol_product=label.split("_")[0],
        eol_cycle="1",
        rolling=rolling,
        security_support_end=eol,
        security_support_end_source="demo" if eol else "",
    )
    for arch in arches:
        UpstreamSource.objects.create(
            image=image,
            arch=arch,
            channel_url=channel,
            file_pattern=r"debian-12-genericcloud-amd64\.qcow2",
            checksum_file="SHA512SUMS",
            checksum_format=ChecksumFormat.GNU,
        )
    return image


def instantapp(label: str, base: Image) -> Image:
    return Image.objects.create(
        kind=ImageKind.INSTANTAPP,
        label=label,
        name=label.title(),
        category=category("InstantApps"),
        architectures=[Arch.X86_64],
        base_image=base,
    )
