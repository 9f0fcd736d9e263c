"""Recording state-changing actions in the audit log.

Every logged-in user (Viewers too) reads the log at /audit/, so an entry never holds a
customer's personal data: a model that holds some names itself with `audit_repr()` (by id),
and callers keep names and addresses out of the message.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from django.db import models

from catalog.models import AuditEntry, Image


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
