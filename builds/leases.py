"""Leases: which worker holds a row's long work, and whether it is still alive.

A worker claims a row with a guarded update that writes its name (`worker_name`) in
`claimed_by` and the time in `heartbeat_at`, then refreshes `heartbeat_at` while it works
(`heartbeat`, which tells it when the claim was lost). A row whose heartbeat is older than
its model's lease is stale: its worker stopped sending heartbeats (it was killed), and
another worker may claim the row and take the work over (`stale_claims` finds them). A claim
also succeeds for the worker that already holds it. Builds and test runs are leased this way.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Any, ClassVar, TypeVar

from django.db import models
from django.db.models import F, Q
from django.utils import timezone


def worker_name(*, per_call: bool = False) -> str:
    """This worker process, as its claims name it: host and process id. With `per_call`, a
    random suffix too, so that two callers in one process hold distinct claims."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return f"{name}:{uuid.uuid4().hex[:6]}" if per_call else name


_L = TypeVar("_L", bound="Leased")


class LeaseQuerySet(models.QuerySet[_L]):
    def stale_claims(self, now: dt.datetime | None = None) -> LeaseQuerySet[_L]:
        """Running rows whose worker stopped sending heartbeats (it was killed)."""
        return self.filter(state__in=self.model.LEASED_STATES).filter(self.model.lease_expired(now))


class Leased(models.Model):
    """A row that one worker at a time works on, under a lease it keeps alive.

    The model has `state`, `started_at` and these class attributes: the queued state, the
    states in which a claim is held and may go stale (`LEASED_STATES`), and the states in
    which a heartbeat is accepted (`HEARTBEAT_STATES`).
    """

    claimed_by = models.CharField(max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    QUEUED: ClassVar[str]
    LEASED_STATES: ClassVar[tuple[str, ...]]
    HEARTBEAT_STATES: ClassVar[tuple[str, ...]]

    class Meta:
        abstract = True

    @classmethod
    def lease_seconds(cls) -> float:
        """How long a heartbeat stays alive (a setting of each model)."""
        raise NotImplementedError

    @classmethod
    def lease_limit(cls, now: dt.datetime | None = None) -> dt.datetime:
        """A row whose last heartbeat is older than this may be taken over."""
        return (now or timezone.now()) - dt.timedelta(seconds=cls.lease_seconds())

    @classmethod
    def lease_expired(cls, now: dt.datetime | None = None) -> Q:
        return Q(heartbeat_at__lt=cls.lease_limit(now)) | Q(heartbeat_at__isnull=True)

    def claimable(self, worker: str, now: dt.datetime) -> Q:
        """The rows `claim` may take: a queued one, or one held by a worker that stopped (or
        by `worker` itself)."""
        takeable = self.lease_expired(now) | Q(claimed_by=worker)
        return Q(state=self.QUEUED) | Q(state__in=self.LEASED_STATES) & takeable

    def claim_updates(self) -> dict[str, Any]:
        """What a claim writes besides the lease itself."""
        return {}

    def claim(self, worker: str, now: dt.datetime | None = None) -> bool:
        """Take the row for `worker`: a queued one, or a running one whose lease expired.

        Returns False when another worker holds a live claim, or the row's work has ended.
        """
        now = now or timezone.now()
        rows = type(self)._default_manager.filter(self.claimable(worker, now), pk=self.pk)
        updated = rows.update(
            claimed_by=worker,
            heartbeat_at=now,
            started_at=models.functions.Coalesce(F("started_at"), models.Value(now)),
            **self.claim_updates(),
        )
        if updated:
            self.refresh_from_db()
        return updated == 1

    def heartbeat(self, worker: str) -> bool:
        """Refresh the lease; False when the claim was lost (taken over, or the work ended)."""
        held = Q(claimed_by=worker, state__in=self.HEARTBEAT_STATES)
        rows = type(self)._default_manager.filter(held, pk=self.pk)
        return rows.update(heartbeat_at=timezone.now()) == 1
