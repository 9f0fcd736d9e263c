"""The default replacement of an OS image is the newest newer release of its distribution,
found without loading every newer release (the deprecation panel's cost at 1,000 images)."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog.models import Image, UpstreamLifecycle
from lifecycle import deprecation
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


def _release(label: str, version: str, released: dt.date | None) -> Image:
    image = os_image(label)
    image.version = version
    image.save(update_fields=["version"])
    UpstreamLifecycle.objects.filter(image=image).update(release_date=released)
    return Image.objects.select_related("upstream").get(pk=image.pk)


@pytest.mark.parametrize("dated", [True, False])
def test_the_default_replacement_is_the_first_of_every_newer_release(dated: bool) -> None:
    mine = _release("debian_a", "11", dt.date(2021, 8, 14) if dated else None)
    _release("debian_b", "10", dt.date(2019, 7, 6))  # older
    _release("debian_c", "12", dt.date(2023, 6, 10))
    _release("debian_d", "12.1", dt.date(2023, 6, 10))  # same day, higher version
    _release("debian_e", "13", None)  # no date: ranks below every dated one
    _release("debian_f", "9", None)  # no date and an older version
    _release("ubuntu_g", "30", dt.date(2030, 1, 1))  # another distribution
    every = deprecation._newer_os_images(mine)
    chosen = deprecation.default_replacement(mine)
    assert chosen is not None and chosen == every[0]
    assert chosen.label == "debian_d"  # a dated release ranks above an undated one
    assert {i.label for i in every} >= {"debian_c", "debian_d", "debian_e"}


def test_no_newer_release_means_no_default_replacement() -> None:
    mine = _release("debian_a", "12", dt.date(2023, 6, 10))
    _release("debian_b", "11", dt.date(2021, 8, 14))
    assert deprecation.default_replacement(mine) is None
