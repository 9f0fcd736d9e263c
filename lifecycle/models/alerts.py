"""The ledger of team alerts: one row per (kind, key), written before anything is sent.

A build failure, a test-run failure or a day's digest is told once: the row is created
with a unique constraint before the email and the webhook leave, so a second call (a retry,
a second worker, a replayed task) finds the row and sends nothing. A crash between the row
and the SMTP conversation delays nothing silently: the row stays unsent, with its error.
The same ledger guards the emails telling requesters that their image request moved.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, models, transaction
from django.utils import timezone

__all__ = ["AlertKind", "AlertSent"]


class AlertKind(models.TextChoices):
    """What an alert is about; with its key, it names one message that goes out once."""

    BUILD_FAILED = "build_failed", "Build failed"
    TEST_RUN_FAILED = "test_run_failed", "Test run failed"
    DIGEST = "digest", "Daily digest"
    REQUEST_STATUS = "request_status", "Image request status"


class AlertSent(models.Model):
    """One alert that was (or is being) sent: claimed before sending, closed after."""

    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    key = models.CharField(max_length=200, help_text="What it is about: a build id, a date...")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When sending ended; empty while it is in flight."
    )
    error = models.TextField(blank=True, help_text="What failed: the email, the webhook.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="one_alert_per_kind_and_key")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}"

    @classmethod
    def claim(cls, kind: str, key: str) -> AlertSent | None:
        """Write the ledger row; None when it already exists (the alert went, or is going)."""
        try:
            with transaction.atomic():
                return cls.objects.create(kind=kind, key=key[:200])
        except IntegrityError:
            return None

    def close(self, error: str = "", now: dt.datetime | None = None) -> None:
        """Record that sending ended, with what failed if anything did (never resent)."""
        self.error = error[:2000]
        self.sent_at = now or timezone.now()
        AlertSent.objects.filter(pk=self.pk).update(error=self.error, sent_at=self.sent_at)
