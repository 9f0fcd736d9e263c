"""The current versions: what the catalogue offers today, one version per image and arch.

The current version of an image and architecture is, among its released versions, the one
released last; only live images count (a deprecated image is hidden from the Marketplace).
Enabling a zone publishes, then tests, exactly these there (`lifecycle.zones`, through a
`post_save` receiver on `Zone`); the zones page lists them before it asks to confirm.
Kept here because it reads catalogue rows only, and catalog imports nothing from lifecycle.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from catalog.choices import LIVE_IMAGE_STATES, VersionState
from catalog.models import ImageVersion

LIVE_STATES = LIVE_IMAGE_STATES  # whose current version is published in a newly enabled zone


def current_versions() -> list[ImageVersion]:
    """The current version of every live image and architecture, by image label then arch
    (one query, whatever the number of images)."""
    released = ImageVersion.objects.filter(
        state=VersionState.RELEASED,
        released_at__isnull=False,
        image__state__in=LIVE_STATES,
    )
    latest = released.filter(image=OuterRef("image"), arch=OuterRef("arch")).order_by(
        "-released_at", "-id"
    )
    return list(
        released.filter(pk=Subquery(latest.values("pk")[:1]))
        .select_related("image")
        .order_by("image__label", "arch")
    )
