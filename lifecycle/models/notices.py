"""Customers, what they run, and the ledger of the deprecation notices sent to them.

A `Notice` row is written before its email leaves and is claimed with a guarded update just
before sending, so a crash can delay a notice but never send it twice: a row left claimed
by a dead worker becomes "uncertain" and waits for a release manager's decision.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Cast, Coalesce, Concat
from django.db.models.lookups import Exact
from django.utils import timezone

__all__ = [
    "CORRECTION",
    "Customer",
    "Language",
    "Notice",
    "NoticeState",
    "Usage",
    "UsageRefresh",
]

# The kind of a correction notice; the other kinds are offsets in days ("90", "30", ...).
CORRECTION = "correction"


class Language(models.TextChoices):
    """The languages notices are written in; a customer without one gets English."""

    EN = "en", "English"
    FR = "fr", "Français"


class Customer(models.Model):
    """Whom to tell: a Scaleway organization or project, with an address and a language."""

    organization_id = models.CharField(max_length=64, blank=True, db_index=True)
    project_id = models.CharField(max_length=64, blank=True, db_index=True)
    name = models.CharField(max_length=200)
    email = models.EmailField()
    language = models.CharField(max_length=8, choices=Language.choices, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        # The customer list pages in this order: an index keeps a page deep in 100,000 rows
        # from sorting them all.
        indexes = [models.Index(fields=["name", "id"], name="customer_name_order")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(organization_id="") | ~Q(project_id=""),
                name="customer_has_organization_or_project",
            ),
            models.UniqueConstraint(
                fields=["project_id"],
                condition=~Q(project_id=""),
                name="one_customer_per_project",
            ),
            models.UniqueConstraint(
                fields=["organization_id"],
                condition=Q(project_id=""),
                name="one_customer_per_organization",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def audit_repr(self) -> str:
        """How the audit log, which Viewers read, names a customer: by id, no personal data."""
        return f"customer {self.pk}"

    @property
    def email_language(self) -> str:
        """The language of the emails this customer gets (English by default)."""
        return self.language if self.language in Language.values else Language.EN

    def unsubscribe(self, when: dt.datetime | None = None) -> bool:
        """Stop every further notice; planned ones are skipped. False if already done."""
        when = when or timezone.now()
        changed = Customer.objects.filter(pk=self.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=when
        )
        if changed:
            self.unsubscribed_at = when
            Notice.objects.filter(customer=self, state=NoticeState.PLANNED).update(
                state=NoticeState.SKIPPED, last_error="The customer unsubscribed."
            )
        return bool(changed)


class Usage(models.Model):
    """One server of a customer running a version of a catalogue image, as last seen."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usages")
    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="usages")
    version = models.ForeignKey(
        "catalog.ImageVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usages",
    )
    zone = models.CharField(max_length=16)
    server_id = models.CharField(max_length=64, unique=True)
    server_name = models.CharField(max_length=200, blank=True)
    provider_image_id = models.CharField(max_length=64, blank=True)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["customer", "zone", "server_name"]
        indexes = [models.Index(fields=["image", "customer"], name="usage_image_customer")]

    def __str__(self) -> str:
        return f"{self.server_name or self.server_id} ({self.zone}) runs {self.image_id}"


class UsageRefresh(models.Model):
    """One run of the usage refresh; a failed one keeps the last known usage and says so."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    source = models.CharField(max_length=32, blank=True)
    servers_seen = models.PositiveIntegerField(default=0)
    usages_kept = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"usage refresh {self.started_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'failed'}"


class NoticeState(models.TextChoices):
    """Where a ledger row stands; only "planned" rows may be claimed."""

    PLANNED = "planned", "Planned"
    CLAIMED = "claimed", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    UNCERTAIN = "uncertain", "Uncertain"
    SKIPPED = "skipped", "Skipped"


class Notice(models.Model):
    """The ledger: one row per (customer, image, notice kind, announced date).

    The row exists before the email is sent; `claim` (one row) or `claim_page` (a page of
    rows, one statement) takes it with a guarded update before the SMTP conversation and
    `mark_sent` / `mark_page_sent` closes it after, so a crash in between leaves a "claimed"
    row that `expire_stale_claims` turns into "uncertain".
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notices")
    image = models.ForeignKey("catalog.Image", on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=16, help_text='Days before the date ("90"), or correction.')
    deprecation_date = models.DateField(help_text="The deprecation date this notice announces.")
    previous_date = models.DateField(
        null=True, blank=True, help_text="For a correction: the date announced before."
    )
    due_at = models.DateTimeField(db_index=True)
    state = models.CharField(
        max_length=16, choices=NoticeState.choices, default=NoticeState.PLANNED
    )
    claimed_by = models.CharField(max_length=100, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["image", "due_at", "customer"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "image", "kind", "deprecation_date"],
                name="one_notice_per_customer_image_kind_date",
            )
        ]
        indexes = [
            models.Index(fields=["state", "due_at"], name="notice_state_due"),
            # An image's notices panel: its counts by state and its customers, from the index.
            models.Index(fields=["image", "state", "customer"], name="notice_image_state"),
        ]

    def __str__(self) -> str:
        return f"{self.kind_label} notice of {self.image_id} to customer {self.customer_id}"

    @property
    def is_correction(self) -> bool:
        return self.kind == CORRECTION

    @property
    def offset_days(self) -> int | None:
        return None if self.is_correction else int(self.kind)

    @property
    def kind_label(self) -> str:
        if self.is_correction:
            return "Correction"
        return "On the day" if self.kind == "0" else f"{self.kind} days before"

    def claim(self, worker: str, message_id: str = "", now: dt.datetime | None = None) -> bool:
        """Take a planned row for sending; False if someone else has it or it is not due."""
        now = now or timezone.now()
        # Unsubscribing skips planned rows, so the state guard also covers an unsubscribe.
        taken = Notice.objects.filter(pk=self.pk, state=NoticeState.PLANNED).update(
            state=NoticeState.CLAIMED,
            claimed_by=worker,
            claimed_at=now,
            attempts=F("attempts") + 1,
            message_id=message_id,
        )
        if taken:
            self.state, self.claimed_by, self.claimed_at = NoticeState.CLAIMED, worker, now
            self.message_id = message_id
        return bool(taken)

    @staticmethod
    def page_message_id(pk: int, token: str, domain: str) -> str:
        """The Message-ID a page claim gives a row's email: it names the row and the claim."""
        return f"<notice.{pk}.{token}@{domain}>"

    @classmethod
    def claim_page(
        cls, pks: list[int], worker: str, domain: str, now: dt.datetime | None = None
    ) -> set[int]:
        """Take many planned rows for sending in ONE guarded update; the pks actually taken.

        Each taken row gets the Message-ID its email will carry (`page_message_id`, written
        by the database itself: one expression, not one CASE branch per row), so an uncertain
        row can be looked up in the mail server's log. The id's fresh token doubles as the
        claim's token: a row counts as taken only if it now holds this worker AND this id, so
        a row left claimed by an earlier run under the same worker name is never mistaken for
        ours (and sent a second time).
        """
        if not pks:
            return set()
        now = now or timezone.now()
        token = uuid.uuid4().hex
        # Unsubscribing skips planned rows, so the state guard also covers an unsubscribe.
        # The guard is written COALESCE(state, '') = 'planned' (state is NOT NULL: the same
        # rows) so that it cannot drive an index: as a plain state = 'planned', SQLite
        # without statistics prefers the (state, due_at) index to the primary keys and scans
        # every planned row per page (55 ms a page with 100,000 planned rows, instead of 0.1).
        cls.objects.filter(
            Exact(Coalesce("state", Value("")), NoticeState.PLANNED), pk__in=pks
        ).update(
            state=NoticeState.CLAIMED,
            claimed_by=worker,
            claimed_at=now,
            attempts=F("attempts") + 1,
            message_id=Concat(
                Value("<notice."),
                Cast("pk", models.CharField()),
                Value(f".{token}@{domain}>"),
                output_field=models.CharField(),
            ),
        )
        return {
            pk
            for pk, message_id in cls.objects.filter(
                pk__in=pks, state=NoticeState.CLAIMED, claimed_by=worker
            ).values_list("pk", "message_id")
            if message_id == cls.page_message_id(pk, token, domain)
        }

    @classmethod
    def mark_page_sent(cls, pks: list[int], worker: str, now: dt.datetime | None = None) -> int:
        """Close many of this worker's claims as sent in ONE update; how many were closed."""
        if not pks:
            return 0
        # Same guard as `_close`: a row turned "uncertain" in the meantime stays so.
        return cls.objects.filter(pk__in=pks, state=NoticeState.CLAIMED, claimed_by=worker).update(
            state=NoticeState.SENT, sent_at=now or timezone.now(), last_error=""
        )

    @classmethod
    def release_claims(cls, pks: list[int], worker: str) -> int:
        """Give back claims whose email was never handed to SMTP: they are planned again.

        Only for rows the caller knows did not leave (the sender stopped before reaching
        them); anything that may have left must stay claimed and become uncertain.
        """
        if not pks:
            return 0
        return cls.objects.filter(pk__in=pks, state=NoticeState.CLAIMED, claimed_by=worker).update(
            state=NoticeState.PLANNED,
            claimed_by="",
            claimed_at=None,
            message_id="",
            attempts=F("attempts") - 1,
        )

    def _close(self, worker: str, **values: object) -> bool:
        # Only the claimer closes its claim: a row turned "uncertain" in the meantime stays so.
        done = Notice.objects.filter(
            pk=self.pk, state=NoticeState.CLAIMED, claimed_by=worker
        ).update(**values)
        for key, value in values.items():
            setattr(self, key, value)
        return bool(done)

    def mark_sent(self, worker: str, now: dt.datetime | None = None) -> bool:
        return self._close(
            worker, state=NoticeState.SENT, sent_at=now or timezone.now(), last_error=""
        )

    def mark_failed(self, worker: str, error: str) -> bool:
        return self._close(worker, state=NoticeState.FAILED, last_error=error[:2000])

    def mark_skipped(self, worker: str, reason: str) -> bool:
        return self._close(worker, state=NoticeState.SKIPPED, last_error=reason)

    def resend(self) -> bool:
        """A release manager's decision on an uncertain or failed row: send it again now."""
        done = Notice.objects.filter(
            pk=self.pk, state__in=[NoticeState.UNCERTAIN, NoticeState.FAILED]
        ).update(state=NoticeState.PLANNED, due_at=timezone.now(), claimed_by="")
        if done:
            self.refresh_from_db()
        return bool(done)

    def confirm_sent(self) -> bool:
        """A release manager's decision on an uncertain row: it did leave, do not resend."""
        done = Notice.objects.filter(pk=self.pk, state=NoticeState.UNCERTAIN).update(
            state=NoticeState.SENT, sent_at=F("claimed_at")
        )
        if done:
            self.refresh_from_db()
        return bool(done)

    @classmethod
    def expire_stale_claims(cls, lease_seconds: float, now: dt.datetime | None = None) -> int:
        """Claims older than the lease belong to dead workers: the email may have left."""
        now = now or timezone.now()
        return cls.objects.filter(
            state=NoticeState.CLAIMED, claimed_at__lt=now - dt.timedelta(seconds=lease_seconds)
        ).update(
            state=NoticeState.UNCERTAIN,
            last_error="The worker stopped while sending: the email may or may not have left.",
        )
