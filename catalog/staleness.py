"""When an image is stale: the one rule that the overview's badge and the refresh cadence share.

Every live image gets a new release at least every REFRESH_DAYS days. The clock starts at its
last release or, for an image never released, at its latest built version; an image with no
version at all is not stale (there is nothing to refresh yet, and no rebuild is queued for it).
Deprecated and retired images are never stale: they get no new versions.

The rule lives in catalog, below lifecycle, so that the overview (catalog) uses it without
importing lifecycle, and lifecycle.refresh builds its cadence on it.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from catalog import dates
from catalog.choices import LIVE_IMAGE_STATES

# Images that still get new versions: a deprecated image is refused for new servers, so
# rebuilding it would only spend build time.
LIVE_STATES = LIVE_IMAGE_STATES


def refresh_days() -> int:
    """Longest time between two releases of an image (setting REFRESH_DAYS, default 90)."""
    return settings.REFRESH_DAYS


def reference_at(
    last_release_at: dt.datetime | None, latest_built_at: dt.datetime | None
) -> dt.datetime | None:
    """Where the refresh clock starts: the last release, else the latest built version."""
    return last_release_at or latest_built_at


def due_on(reference: dt.datetime) -> dt.date:
    """The day by which the next release is due (the image is stale from that day on)."""
    return dates.add_days(timezone.localdate(reference), refresh_days())


def stale_before(today: dt.date) -> dt.datetime:
    """The same rule as a bound for a query: stale when the reference is before this moment.

    `due_on(reference) <= today` exactly when `reference` is earlier than the start of the
    local day after `today - REFRESH_DAYS`.
    """
    first_fresh_day = dates.add_days(today, 1 - refresh_days())
    return timezone.make_aware(dt.datetime.combine(first_fresh_day, dt.time.min))


def is_stale(state: str, reference: dt.datetime | None, today: dt.date) -> bool:
    """Whether an image in `state`, whose refresh clock started at `reference`, is stale."""
    return state in LIVE_STATES and reference is not None and due_on(reference) <= today
