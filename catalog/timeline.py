"""An image's life on one line: upstream release, support ends, planned deprecation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from catalog import dates
from catalog.models import Image


@dataclass(frozen=True)
class Milestone:
    """One dated point of the timeline, placed in percent of its width."""

    date: dt.date
    label: str
    kind: str  # release | support | eol | deprecation | extended | today
    percent: float = 0.0
    past: bool = False


def planned_deprecation(image: Image) -> dt.date | None:
    """The image's deprecation date: set explicitly, or the followed upstream date + grace;
    None when that lands outside the accepted range (the policy then sets no date either)."""
    if image.deprecation_date:
        return image.deprecation_date
    lifecycle = getattr(image.base_image if not image.is_os else image, "upstream", None)
    followed = lifecycle.followed_date if lifecycle else None
    if followed is None:
        return None
    planned = dates.add_days(followed, image.effective_grace_days)
    return planned if dates.in_range(planned) else None


def timeline_for(image: Image, today: dt.date | None = None) -> list[Milestone]:
    today = today or timezone.localdate()
    source = image if image.is_os else image.base_image
    lifecycle = getattr(source, "upstream", None) if source else None
    points: list[tuple[dt.date | None, str, str]] = []
    if lifecycle:
        points += [
            (lifecycle.release_date, "Upstream release", "release"),
            (lifecycle.active_support_end, "End of active support", "support"),
            (lifecycle.security_support_end, "Upstream EOL (security support ends)", "eol"),
            (lifecycle.extended_support_end, "End of extended support", "extended"),
        ]
    points.append((planned_deprecation(image), "Deprecation on this platform", "deprecation"))
    dated = [(d, label, kind) for d, label, kind in points if d is not None]
    if not dated:
        return []
    dated.append((today, "Today", "today"))
    dated.sort(key=lambda p: p[0])
    start, end = dated[0][0], dated[-1][0]
    span = max((end - start).days, 1)
    return [
        Milestone(d, label, kind, round((d - start).days * 100 / span, 1), d < today)
        for d, label, kind in dated
    ]
