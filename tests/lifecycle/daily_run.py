"""The daily transitions as the deprecation tests run them: on a fixed day, at 00:30 UTC (when
the schedule runs them), with the image read back from the database afterwards."""

from __future__ import annotations

import datetime as dt

import time_machine

from catalog.models import Image
from lifecycle import deprecation

TODAY = dt.date(2026, 3, 1)
NOON = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 30), tzinfo=dt.UTC)


def run(day: dt.date = TODAY) -> deprecation.TransitionSummary:
    with time_machine.travel(at(day), tick=False):
        return deprecation.run_transitions()


def fresh(image: Image) -> Image:
    return Image.objects.get(pk=image.pk)
