"""The range of dates the product accepts, and day arithmetic that never overflows.

Every date a person or an import gives (an upstream date, a deprecation date) is between
`EARLIEST` and `LATEST`: far enough either way for any real release, and far from the ends
of `datetime.date`, so that adding a grace period or a notice offset to an accepted date can
never raise `OverflowError`. Code that adds days to a date it did not check itself (a row
written before the bounds existed, a huge grace period) uses `add_days`, which clamps
instead of raising.

The data migration catalog 0003 clamped the dates stored before; it copies these bounds, so
change them there only with a new migration.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError

EARLIEST = dt.date(1990, 1, 1)
LATEST = dt.date(2100, 12, 31)


def in_range(value: dt.date) -> bool:
    """True when `value` is a date the product accepts."""
    return EARLIEST <= value <= LATEST


def range_message(value: dt.date | None = None) -> str:
    """The message that refuses a date out of range, for forms and import reports."""
    shown = f"{value:%Y-%m-%d} is" if value is not None else "The date is"
    return f"{shown} out of range: choose a date between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}."


def validate_in_range(value: dt.date | None) -> None:
    """Validator of every accepted date (model fields and forms)."""
    if value is not None and not in_range(value):
        raise ValidationError(range_message(value), code="date_out_of_range")


def add_days(value: dt.date, days: int) -> dt.date:
    """`value` + `days`, clamped to `datetime.date`'s own range instead of overflowing."""
    try:
        return value + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def widget_attrs() -> dict[str, str]:
    """The bounds as a date input's `min` and `max`, so browsers refuse them up front."""
    return {"type": "date", "min": EARLIEST.isoformat(), "max": LATEST.isoformat()}
