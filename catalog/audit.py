"""Recording state-changing actions in the audit log, and reading it a page at a time.

Every logged-in user (Viewers too) reads the log at /audit/, so an entry never holds a
customer's personal data: a model that holds some names itself with `audit_repr()` (by id),
and callers keep names and addresses out of the message.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import QuerySet

from catalog.models import AuditEntry, Image

PAGE_SIZE = 50


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def snapshot(obj: models.Model, fields: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The values of `fields` on `obj`, JSON-ready, for the before/after of an entry."""
    values = {}
    for name in fields:
        field = obj._meta.get_field(name)
        values[name] = _plain(getattr(obj, field.attname))  # type: ignore[union-attr]
    return values


def describe(target: models.Model) -> str:
    """How an entry names its target: the model's `audit_repr()` when it has one, else str()."""
    audit_repr = getattr(target, "audit_repr", None)
    return (audit_repr() if callable(audit_repr) else str(target))[:255]


def record(
    action: str,
    *,
    actor: Any = None,
    image: Image | None = None,
    target: models.Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
    message: str = "",
) -> AuditEntry:
    """Write one audit entry. `actor` is a user, or None for the system (imports, schedules)."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user else "system",
        action=action,
        image=image,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=describe(target) if target is not None else "",
        before=_plain(before) if before is not None else None,
        after=_plain(after) if after is not None else None,
        message=message,
    )


@dataclass
class LogPage:
    """One page of the log, newest first, and the cursors of the pages on either side.

    `older` is the id to pass as `before` for the next (older) page, `newer` the id to pass
    as `after` for the previous one; None at either end.
    """

    entries: list[AuditEntry]
    older: int | None
    newer: int | None


def _cursor(pk: str | None) -> AuditEntry | None:
    if not pk or not pk.isdigit():
        return None
    return AuditEntry.objects.filter(pk=int(pk)).only("id", "created_at").first()


def log_page(
    entries: QuerySet[AuditEntry],
    before: str | None = None,
    after: str | None = None,
    size: int = PAGE_SIZE,
) -> LogPage:
    """The page of `entries` just older than entry `before`, or just newer than `after`, or
    the newest page.

    Keyset pagination on (created_at, id), the log's order: a page deep in the log costs what
    the first one does, where an OFFSET would read and skip every row before it. The bound is
    a range on created_at (which its index seeks to) minus the cursor's own instant's other
    side, not an OR, which the index could not seek. Entries written meanwhile never shift a
    page. An unknown cursor gives the newest page.
    """
    if (start := _cursor(before)) is not None:
        rows = list(
            entries.filter(created_at__lte=start.created_at)
            .exclude(created_at=start.created_at, id__gte=start.id)
            .order_by("-created_at", "-id")[: size + 1]
        )
        more_older, more_newer = len(rows) > size, True
        rows = rows[:size]
    elif (start := _cursor(after)) is not None:
        rows = list(
            entries.filter(created_at__gte=start.created_at)
            .exclude(created_at=start.created_at, id__lte=start.id)
            .order_by("created_at", "id")[: size + 1]
        )
        more_newer, more_older = len(rows) > size, True
        rows = rows[:size][::-1]
    else:
        rows = list(entries.order_by("-created_at", "-id")[: size + 1])
        more_older, more_newer = len(rows) > size, False
        rows = rows[:size]
    if not rows:
        return LogPage([], None, None)
    return LogPage(
        rows,
        older=rows[-1].pk if more_older else None,
        newer=rows[0].pk if more_newer else None,
    )
