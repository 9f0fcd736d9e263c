"""Durations in words a person reads: "10 min 32 s", not "0:10:32.721739"."""

from __future__ import annotations

import datetime as dt

from django import template

register = template.Library()


@register.filter
def duration(value: dt.timedelta | float | int | None) -> str:
    """A timedelta or a number of seconds as "2 h 5 min", "10 min 32 s", "4.2 s" or "0.3 s".

    Two units at most, the largest first; seconds keep a tenth under ten seconds. Empty for
    None, so that `|default:"—"` applies.
    """
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{int(seconds * 10) / 10:g} s"
    whole = int(seconds)  # whole seconds elapsed, as a clock shows them
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    first, second = parts[0], parts[1] if len(parts) > 1 else None
    if second is None or second[0] == 0:
        return f"{first[0]} {first[1]}"
    return f"{first[0]} {first[1]} {second[0]} {second[1]}"
